"""Data-OOB: bagged logistic regressions fitted at once match scikit-learn; flipped rows rank low."""
from __future__ import annotations

import numpy as np

from core.valuation import data_oob
from core.valuation.data_oob import fit_bagged_logistic


def test_joint_fit_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(80, 3))
    y = (Z[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(int)
    w = np.stack([np.ones(80), rng.integers(0, 3, 80).astype(float)])
    W = fit_bagged_logistic(Z, y, w, n_classes=2, C=1.0, max_iter=2000)
    for b in range(2):
        ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(Z, y, sample_weight=w[b])
        ours = (Z @ W[b, :-1] + W[b, -1])
        margin = ours[:, 1] - ours[:, 0]
        np.testing.assert_allclose(margin, ref.decision_function(Z), atol=2e-3)


def test_flipped_rows_rank_low(blobs, auc):
    train, valid, flipped = blobs
    v = data_oob(train, n_estimators=60, seed=0)
    assert auc(v.values, flipped) > 0.9
    assert ((v.values >= 0) & (v.values <= 1)).all()
    assert v.counts.min() > 5 and v.counts.mean() < 60 * 0.45  # about 1/e of the learners miss each row
    again = data_oob(train, n_estimators=60, seed=0)
    np.testing.assert_array_equal(v.values, again.values)
