"""Without --valid, the held-out rows' values are on the same scale as every other row's, for every method.

The held-out 10 % is valued by swapping roles; a method whose values depend on the training set's size (KNN-Shapley,
TMC-Shapley, leave-one-out) once valued those rows against a training set of only their own size, which put them on
another scale (they took the top ranks). Here, on clean data, a Kolmogorov-Smirnov test must not separate the
held-out rows' value ranks from the others', and on data with flipped labels the flipped held-out rows rank low.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ks_2samp

from core.valuation import METHODS, value_dataset
from core.valuation.consensus import normalised_rank
from core.valuation.validation import default_valid_fraction, holdout_split

FAST = {"ts_dshapley": dict(n_passes=4, n_permutations=4, subset_size=40, n_jobs=1),
        "tmc_shapley": dict(max_permutations=150, min_permutations=150, convergence=0),
        "data_oob": dict(n_estimators=50),
        "consensus": dict(member_options={"ts_dshapley": dict(n_passes=4, n_permutations=4, subset_size=40,
                                                              n_jobs=1), "data_oob": dict(n_estimators=50)})}
SEED = 3


def _held_out(y: np.ndarray, method: str) -> np.ndarray:
    _, va = holdout_split(y, fraction=default_valid_fraction(method), max_rows=2000, seed=SEED)
    mask = np.zeros(len(y), dtype=bool)
    mask[va] = True
    return mask


@pytest.mark.parametrize("method", sorted(METHODS))
def test_held_out_rows_share_the_scale_of_the_others(method, make_pair):
    clean, _, _ = make_pair(n=600, n_valid=10, n_classes=3, flip=0.0, seed=11, spread=2.0)
    v = value_dataset(clean.X, clean.y, clean.uids, method=method, seed=SEED, **FAST.get(method, {}))
    held = _held_out(clean.y, method)
    assert held.sum() == 600 * default_valid_fraction(method)
    r = normalised_rank(v.values)
    p = ks_2samp(r[held], r[~held]).pvalue
    assert p > 0.01, f"{method}: held-out ranks differ from the others' (KS p = {p:.2g}; held-out mean rank " \
                     f"{r[held].mean():.2f})"
    if method == "random":
        return
    noisy, _, flipped = make_pair(n=600, n_valid=10, n_classes=3, flip=0.2, seed=12, spread=2.0)
    v = value_dataset(noisy.X, noisy.y, noisy.uids, method=method, seed=SEED, **FAST.get(method, {}))
    held = _held_out(noisy.y, method)
    r = normalised_rank(v.values)
    assert (held & flipped).sum() >= 5
    # flipped held-out rows rank low, like the flipped rows valued in the first phase
    low, first_phase = r[held & flipped].mean(), r[~held & flipped].mean()
    assert low < 0.3 and abs(low - first_phase) < 0.15, \
        f"{method}: flipped held-out rows' mean rank {low:.2f}, flipped first-phase rows' {first_phase:.2f}"
    assert r[held & ~flipped].mean() > 0.5
