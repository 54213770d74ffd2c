"""Leave-one-out: the rank-one downdates equal refitting without each row."""
from __future__ import annotations

import numpy as np
import pytest

from core.valuation import loo
from core.valuation.source import ridge_utility, source_features


@pytest.mark.parametrize("utility", ["neg_mse", "accuracy"])
def test_downdates_equal_refits(make_pair, utility):
    train, valid, _ = make_pair(n=30, n_valid=25, n_classes=3, dim=4, seed=2)
    v = loo(train, valid=valid, utility=utility, ridge_alpha=2.0, batch_size=7)
    Z, Zv = source_features(train.X, valid.X)
    full = ridge_utility(Z, train.y, Zv, valid.y, n_classes=3, alpha=2.0, utility=utility)
    for i in range(len(train)):
        keep = np.arange(len(train)) != i
        ref = full - ridge_utility(Z[keep], train.y[keep], Zv, valid.y, n_classes=3, alpha=2.0, utility=utility)
        assert v.values[i] == pytest.approx(ref, abs=1e-9)


def test_smooth_loo_ranks_flipped_low(blobs, auc):
    train, valid, flipped = blobs
    assert auc(loo(train, valid=valid, utility="neg_mse").values, flipped) > 0.8
