"""Label quality: cross-fitted cleanlab scores in [0, 1], flipped rows lowest."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.valuation import label_quality


def test_flipped_rows_rank_low(blobs, auc):
    train, valid, flipped = blobs
    v = label_quality(train, seed=0)
    assert auc(v.values, flipped) > 0.9
    assert ((v.values >= 0) & (v.values <= 1)).all()
    assert v.params["scale"].startswith("cleanlab")
    pca = label_quality(train, seed=0, n_components=4)
    assert auc(pca.values, flipped) > 0.9


def test_a_class_with_one_row_is_an_error(blobs):
    train, _, _ = blobs
    keep = np.concatenate([np.flatnonzero(train.y < 2), np.flatnonzero(train.y == 2)[:1]])
    with pytest.raises(DataError, match="at least 2 rows of every class"):
        label_quality(train.take(keep))
