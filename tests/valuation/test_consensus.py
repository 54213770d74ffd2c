"""Consensus: rank average of members, each member's rank kept per row."""
from __future__ import annotations

import numpy as np

from core.valuation import Values, consensus
from core.valuation.consensus import combine, normalised_rank


def _vals(uids, values, method):
    n = len(uids)
    return Values(uids=np.asarray(uids), values=np.asarray(values, float), stderr=np.full(n, np.nan),
                  counts=np.ones(n, np.int64), method=method)


def test_combine_averages_normalised_ranks_and_keeps_them():
    a = _vals(["x", "y", "z"], [0.1, 0.5, 0.9], "a")
    b = _vals(["z", "y", "x"], [-3.0, 2.0, 1.0], "b")  # other order: aligned by uid
    c = combine([a, b])
    np.testing.assert_allclose(c.extra["rank_a"], [0, 0.5, 1])
    np.testing.assert_allclose(c.extra["rank_b"], [0.5, 1, 0])
    np.testing.assert_allclose(c.values, [0.25, 0.75, 0.5])
    assert (c.counts == 2).all() and c.params["members"] == ["a", "b"]
    np.testing.assert_allclose(normalised_rank(np.array([1.0, 1.0, 2.0])), [0.25, 0.25, 1.0])


def test_consensus_finds_flipped_rows(blobs, auc):
    train, valid, flipped = blobs
    v = consensus(train, valid=valid, seed=0, members=("knn_shapley", "label_quality", "ts_dshapley"),
                  member_options={"ts_dshapley": {"n_passes": 3, "n_permutations": 3, "subset_size": 50,
                                                  "n_jobs": 1}})
    assert auc(v.values, flipped) > 0.9
    assert set(v.extra) == {"rank_knn_shapley", "rank_label_quality", "rank_ts_dshapley"}
    assert ((v.values >= 0) & (v.values <= 1)).all()
