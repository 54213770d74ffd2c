"""The cross-fitted probabilities convert one fold at a time to float64 (X may be memory-mapped float32): the values
are exactly scikit-learn's cross_val_predict on the whole float64 matrix, as they were computed before."""
from __future__ import annotations

import numpy as np

from core.valuation.source import cross_fitted_proba


def test_fold_by_fold_equals_cross_val_predict_on_the_whole_float64_matrix(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(1)
    n, d = 1200, 24
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, d)) + np.eye(d)[y] * 1.5).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    got = cross_fitted_proba(Xm, y, n_classes=5, seed=3)  # classes 3 and 4 never occur: columns of zeros
    ref = np.zeros((n, 5))
    ref[:, :3] = cross_val_predict(LogisticRegression(max_iter=500), np.asarray(X, dtype=np.float64), y,
                                   cv=StratifiedKFold(5, shuffle=True, random_state=3), method="predict_proba")
    np.testing.assert_array_equal(got, ref)
    assert (got.argmax(1) == y).mean() > 0.6
