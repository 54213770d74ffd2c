"""Random: seeded standard-normal values, the floor of every comparison."""
from __future__ import annotations

import numpy as np

from core.valuation import METHODS, random_values


def test_seeded_and_shaped(blobs):
    train, valid, _ = blobs
    a, b = random_values(train, seed=1), random_values(train, valid=valid, seed=1)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.shape == (len(train),) and np.isnan(a.stderr).all() and (a.counts == 1).all()
    assert METHODS["random"] is random_values
    assert list(METHODS) == ["ts_dshapley", "tmc_shapley", "knn_shapley", "data_oob", "loo", "label_quality",
                             "consensus", "random"]
