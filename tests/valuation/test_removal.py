"""The removal-index search: best removal on a second split, ties to the smaller, class-share warnings."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import WinnowWarning
from core.valuation import Split, Values, suggest_removal, value_dataset


def _values(split, v):
    return Values(uids=split.uids, values=np.asarray(v, float), stderr=np.full(len(split), np.nan),
                  counts=np.ones(len(split), np.int64), method="test")


def test_removing_the_flipped_rows_is_suggested(make_pair):
    train, valid, flipped = make_pair(n=300, n_valid=120, n_classes=2, dim=6, flip=0.2, spread=2.5, seed=4)
    score_on = make_pair(n=300, n_valid=300, n_classes=2, dim=6, flip=0.0, spread=2.5, seed=4)[1]
    oracle = _values(train, np.where(flipped, -1.0, 1.0))
    s = suggest_removal(train, oracle, valid=valid, score_on=score_on, seed=0)
    assert s.scoring == "second split" and s.n_remove > 0 and s.score >= s.baseline
    rows = {c["n_removed"]: c for c in s.curve}
    assert int(flipped.sum()) in rows  # the zero crossing is a candidate
    assert set(s.uids) <= set(train.uids[flipped])
    last = s.curve[-1]
    assert last["score_highest"] <= last["score"]


def test_ties_go_to_the_smaller_removal_and_folds_over_v(blobs):
    train, valid, _ = blobs
    flat = _values(train, np.zeros(len(train)))
    s = suggest_removal(train, flat, valid=valid, fractions=(0.0,), seed=0)
    assert s.n_remove == 0 and s.scoring == "3-fold over V"


def test_warns_when_a_class_falls_below_half_its_share(make_pair):
    train, valid, _ = make_pair(n=120, n_valid=60, n_classes=3, dim=4, flip=0.0, seed=1)
    X = train.X.copy()
    X[train.y == 2] = X[train.y == 0][: int((train.y == 2).sum())]  # class 2 rows look like class 0
    train = Split(train.uids, X, train.y)
    score_on = valid.take(np.flatnonzero(valid.y < 2))  # only classes 0 and 1 are scored
    v = _values(train, np.where(train.y == 2, -1.0, 1.0) + np.linspace(0, 0.1, len(train)))
    with pytest.warns(WinnowWarning, match="class code 2 at .* below half its share"):
        s = suggest_removal(train, v, valid=valid, score_on=score_on, fractions=(0.3,), seed=0)
    assert s.n_remove == 40 and s.warnings  # the zero crossing: every class-2 row


def test_value_dataset_records_the_suggestion(blobs):
    train, valid, _ = blobs
    v = value_dataset(train.X, train.y, train.uids, method="knn-shapley", seed=0, suggest_removal=True)
    r = v.params["removal"]
    assert r["scoring"] == "second split" and r["n_scoring"] == 10
    assert {"fraction", "n_removed", "score", "score_highest", "score_random"} <= set(r["curve"][1])
    w = value_dataset(train.X, train.y, train.uids, method="knn-shapley", valid=valid, seed=0, suggest_removal=True)
    assert w.params["removal"]["n_scoring"] == len(valid) // 3 and w.params["n_valid"] == len(valid) - 30
