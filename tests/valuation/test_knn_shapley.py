"""KNN-Shapley: exact (matches enumeration), sums to the full-set KNN utility, flipped rows rank low."""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest

from core.valuation import knn_shapley
from core.valuation.knn_shapley import knn_utility


@pytest.mark.parametrize("k", [1, 3, 10])
def test_values_sum_to_full_set_utility(blobs, k):
    train, valid, _ = blobs
    v = knn_shapley(train, valid=valid, k=k)
    assert v.values.sum() == pytest.approx(knn_utility(train, valid, k=k), abs=1e-9)
    assert (v.counts == len(valid)).all() and v.params["k"] == k


def test_matches_exact_enumeration(make_pair):
    train, valid, _ = make_pair(n=7, n_valid=5, n_classes=2, dim=2, flip=0.3, seed=1)
    k = 3
    n = len(train)

    def u(S):
        if not S:
            return 0.0
        return knn_utility(train.take(np.array(S)), valid, k=k)

    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for r in range(n):
            for S in combinations(others, r):
                phi[i] += (u(sorted(S + (i,))) - u(list(S))) / (n * comb(n - 1, r))
    np.testing.assert_allclose(knn_shapley(train, valid=valid, k=k).values, phi, atol=1e-12)


def test_flipped_rows_rank_low(blobs, auc):
    train, valid, flipped = blobs
    v = knn_shapley(train, valid=valid, batch_size=7)  # several validation batches
    assert auc(v.values, flipped) > 0.9
    assert np.isfinite(v.stderr).all()
