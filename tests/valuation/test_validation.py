"""value_dataset: validation from the user or a held-out split valued by swapping roles; checks; resume."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.valuation import method_key, value_dataset
from core.valuation.validation import holdout_split, stratified_sample

TS = dict(n_passes=3, n_permutations=3, subset_size=40, n_jobs=1)


def test_holdout_then_swap_values_every_row(blobs, auc):
    train, _, flipped = blobs
    v = value_dataset(train.X, train.y, train.uids, method="ts-dshapley", seed=0, valid_fraction=0.1, **TS)
    assert list(v.uids) == list(train.uids)
    assert (v.counts == 3).all()  # held-out rows too
    assert v.params["validation"] == "holdout+swap" and v.params["n_valid"] == 20
    assert "swap_params" in v.params and not any(k.startswith("pass_") for k in v.extra)
    assert auc(v.values, flipped) > 0.7  # 20 noisy validation rows, 9 samples per row
    half = value_dataset(train.X, train.y, train.uids, method="ts_dshapley", seed=0, **TS)
    assert half.params["n_valid"] == 100 and half.params["valid_fraction"] == 0.5  # TS-DShapley's default
    again = value_dataset(train.X, train.y, train.uids, method="ts_dshapley", seed=0, valid_fraction=0.1, **TS)
    np.testing.assert_array_equal(v.values, again.values)


def test_user_validation_set_is_used_and_capped(blobs):
    train, valid, _ = blobs
    v = value_dataset(train.X, train.y, train.uids, method="knn-shapley", valid=valid, seed=0)
    assert v.params["validation"] == "file" and v.params["n_valid"] == len(valid)
    capped = value_dataset(train.X, train.y, train.uids, method="knn_shapley", valid=valid, max_valid=30)
    assert capped.params["n_valid"] == 30


def test_methods_without_validation_value_all_rows_at_once(blobs):
    train, _, _ = blobs
    v = value_dataset(train.X, train.y, train.uids, method="random", seed=2)
    assert v.params["validation"] == "not used" and len(v) == len(train)


def test_holdout_split_is_stratified_and_capped():
    y = np.array([0] * 900 + [1] * 100)
    tr, va = holdout_split(y, fraction=0.1, max_rows=2000, seed=0)
    assert len(va) == 100 and np.bincount(y[va]).tolist() == [90, 10]
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 1000
    _, va = holdout_split(np.arange(50000) % 2, max_rows=2000)
    assert len(va) == 2000
    idx = stratified_sample(np.array([0, 0, 0, 1, 1, 2, 2]), 3, np.random.default_rng(0))
    assert len(set(np.array([0, 0, 0, 1, 1, 2, 2])[idx])) == 3


def test_bad_inputs(blobs):
    train, valid, _ = blobs
    X = train.X.copy()
    X[3] = np.nan
    with pytest.raises(DataError, match=r"NaN or infinite values in 1 row\(s\) \(first uid: r3\)"):
        value_dataset(X, train.y, train.uids, method="knn-shapley")
    classes = ["ant", "bee", "cat"]
    no_cat = valid.take(np.flatnonzero(valid.y < 2))
    with pytest.raises(DataError, match="class 'cat' is missing from the validation set"):
        value_dataset(train.X, train.y, train.uids, method="knn-shapley", valid=no_cat, classes=classes)
    two = np.flatnonzero(train.y < 2)
    with pytest.raises(DataError, match="validation set has label 'cat' that the training data lacks"):
        value_dataset(train.X[two], train.y[two], train.uids[two], method="loo", valid=valid, classes=classes)
    one_cat = np.concatenate([two, np.flatnonzero(train.y == 2)[:1]])
    with pytest.raises(DataError, match="class 'cat' has only 1 row"):
        value_dataset(train.X[one_cat], train.y[one_cat], train.uids[one_cat], method="knn-shapley",
                      classes=classes)
    with pytest.raises(DataError, match="unknown valuation method 'shapley'; choose from ts-dshapley"):
        value_dataset(train.X, train.y, train.uids, method="shapley")
    with pytest.raises(DataError, match="do not match"):
        value_dataset(train.X[:-1], train.y, train.uids, method="random")
    assert method_key("TMC") == "tmc_shapley" and method_key("data-oob") == "data_oob"


def test_killed_holdout_run_resumes(blobs):
    train, _, _ = blobs
    full = value_dataset(train.X, train.y, train.uids, method="ts_dshapley", seed=1, **TS)
    saved = []

    class Killed(Exception):
        pass

    def die(fraction, message, partial):
        if partial is not None:
            saved.append(partial)
            if len(saved) == 4:  # the three passes of the first phase and one of the swapped phase
                raise Killed()

    with pytest.raises(Killed):
        value_dataset(train.X, train.y, train.uids, method="ts_dshapley", seed=1, on_progress=die, **TS)
    ran = []
    resumed = value_dataset(train.X, train.y, train.uids, method="ts_dshapley", seed=1, continue_from=saved[-1],
                            on_progress=lambda f, m, p: ran.append(p) if p is not None else None, **TS)
    assert len(ran) == 2 + 1  # two tasks left, plus the restored first phase handing back its state
    np.testing.assert_array_equal(resumed.values, full.values)


def test_consensus_through_value_dataset(blobs, auc):
    train, valid, flipped = blobs
    v = value_dataset(train.X, train.y, train.uids, method="consensus", valid=valid, seed=0,
                      members=["knn-shapley", "label-quality"])
    assert set(v.extra) == {"rank_knn_shapley", "rank_label_quality"}
    assert auc(v.values, flipped) > 0.9


def test_cleaned_validation_split_drops_contradicted_rows_and_says_so(make_pair):
    train, _, flipped = make_pair(n=600, flip=0.2, seed=5, spread=2.0)
    v = value_dataset(train.X, train.y, train.uids, method="knn-shapley", seed=0)
    rec = v.params["valid_cleaning"]
    assert rec["threshold"] == 0.2 and "cross-fitted" in rec["rule"]
    held, swap = rec["held_out"], rec["swap_validation"]
    assert held["rows"] == 60 == v.params["n_valid"] and swap["rows"] == 60
    _, va = holdout_split(train.y, seed=0)
    assert held["dropped"] >= 0.6 * flipped[va].sum()  # most flipped validation rows are left out...
    assert held["dropped"] <= flipped[va].sum() + 6  # ...and few clean ones
    assert (v.counts > 0).all()  # the rows left out of the validation set are still valued
    plain = value_dataset(train.X, train.y, train.uids, method="knn-shapley", seed=0, clean_valid=None)
    assert "valid_cleaning" not in plain.params
    assert not np.array_equal(plain.values, v.values)


@pytest.mark.parametrize("method", ["ts_dshapley", "knn_shapley", "loo", "consensus"])
def test_a_clean_validation_file_is_never_cleaned(blobs, method):
    train, valid, _ = blobs
    opts = {"ts_dshapley": TS, "consensus": {"members": ["knn-shapley", "ts-dshapley"],
                                            "member_options": {"ts_dshapley": TS}}}.get(method, {})
    a = value_dataset(train.X, train.y, train.uids, method=method, valid=valid, seed=0, **opts)
    b = value_dataset(train.X, train.y, train.uids, method=method, valid=valid, seed=0, clean_valid=None, **opts)
    c = value_dataset(train.X, train.y, train.uids, method=method, valid=valid, seed=0, clean_valid=0.9, **opts)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.values, c.values)
    assert "valid_cleaning" not in a.params and a.params.get("validation", "file") == "file"
