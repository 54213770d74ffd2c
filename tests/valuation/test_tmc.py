"""TMC-Shapley: matches exact Shapley values computed by enumeration; flipped rows rank low; resumes."""
from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np
import pytest

from core.valuation import tmc_shapley
from core.valuation.source import ridge_utility, source_features


def exact_shapley(Z, y, Zv, yv, n_classes, utility, alpha):
    n = len(y)
    phi = np.zeros(n)
    u = {}
    for r in range(n + 1):
        for S in combinations(range(n), r):
            idx = list(S)
            u[S] = ridge_utility(Z[idx], y[idx], Zv, yv, n_classes=n_classes, alpha=alpha, utility=utility)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for r in range(n):
            for S in combinations(others, r):
                with_i = tuple(sorted(S + (i,)))
                phi[i] += (u[with_i] - u[S]) / (n * comb(n - 1, r))
    return phi


@pytest.mark.parametrize("utility", ["neg_mse", "accuracy"])
def test_matches_exact_enumeration_on_six_rows(make_pair, utility):
    train, valid, _ = make_pair(n=6, n_valid=40, n_classes=2, dim=3, flip=0.17, seed=3, spread=2.0)
    Z, Zv = source_features(train.X, valid.X, n_components=None)
    exact = exact_shapley(Z, train.y, Zv, valid.y, 2, utility, 1.0)
    est = tmc_shapley(train, valid=valid, seed=0, max_permutations=3000, batch_permutations=500, convergence=0,
                      truncation=0, utility=utility, ridge_alpha=1.0, n_components=None)
    assert (est.counts == 3000).all()
    assert np.abs(est.values - exact).max() < 4 * est.stderr.max() + 1e-3
    assert est.values.sum() == pytest.approx(exact.sum(), abs=1e-9)  # efficiency holds for every permutation


def test_flipped_rows_rank_low_and_converges(blobs, auc):
    train, valid, flipped = blobs
    v = tmc_shapley(train, valid=valid, seed=0, max_permutations=300, min_permutations=50, convergence=0.6)
    assert auc(v.values, flipped) > 0.85
    assert v.counts[0] < 300  # stopped on convergence
    assert v.values.shape == v.stderr.shape == (len(train),)


def test_resume_continues_the_same_permutations(blobs):
    train, valid, _ = blobs
    opts = dict(max_permutations=60, batch_permutations=20, convergence=0, seed=4)
    full = tmc_shapley(train, valid=valid, **opts)
    seen = []

    class Killed(Exception):
        pass

    def stop(f, m, p):
        seen.append(p)
        raise Killed()

    with pytest.raises(Killed):
        tmc_shapley(train, valid=valid, on_progress=stop, **opts)
    assert (seen[0].counts == 20).all()
    resumed = tmc_shapley(train, valid=valid, continue_from=seen[0], **opts)
    np.testing.assert_allclose(resumed.values, full.values, atol=1e-12)
    np.testing.assert_allclose(resumed.stderr, full.stderr, rtol=1e-6)
