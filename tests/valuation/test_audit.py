"""The self-check: flipped labels, ROC-AUC and precision at the number flipped per method."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.valuation import audit_dataset, flip_labels


def test_flip_labels_changes_exactly_the_share():
    y = np.arange(200) % 3
    out, mask = flip_labels(y, 0.05, n_classes=3, seed=1)
    assert mask.sum() == 10 and (out[mask] != y[mask]).all() and (out[~mask] == y[~mask]).all()
    again, mask2 = flip_labels(y, 0.05, n_classes=3, seed=1)
    np.testing.assert_array_equal(out, again)
    with pytest.raises(DataError, match="between 0 and 0.5"):
        flip_labels(y, 0.7)


def test_audit_reports_each_method(make_pair):
    train, _, _ = make_pair(n=240, flip=0.0, seed=2)
    rows, mask, results = audit_dataset(train.X, train.y, train.uids, methods=["knn-shapley", "random"],
                                        flip=0.1, seed=0)
    assert [r["method"] for r in rows] == ["knn-shapley", "random"]
    assert rows[0]["n_flipped"] == 24 == mask.sum()
    assert rows[0]["auc"] > 0.8 and rows[0]["auc"] > rows[1]["auc"] + 0.2
    assert 0 <= rows[0]["precision_at_k"] <= 1 and rows[0]["seconds"] >= 0
    assert set(results) == {"knn_shapley", "random"}
