"""Leave-one-out: how much the source classifier's validation utility drops when one training row is removed.

Cook 1977 / Koh & Liang 2017 as the classic baseline of data valuation. With the ridge source classifier of
TS-DShapley every leave-one-out fit is an exact rank-one downdate of the full fit (Sherman-Morrison), so all n
refits cost one pass over the rows: S_{-i} = S - (V u_i)(y_i - W^T x_i)^T / (1 - h_i), u_i = A^{-1} x_i.
"""
from __future__ import annotations

import time

import numpy as np

from core.valuation.base import ProgressFn, Split, Values, checked
from core.valuation.source import (N_COMPONENTS, RIDGE_ALPHA, UTILITY, Utility, augment, check_classes, check_finite,
                                   ridge_utility, score_utility, source_features)


@checked(UTILITY, N_COMPONENTS, RIDGE_ALPHA)
def loo(train: Split, *, valid: Split, utility: Utility = "neg_mse", n_components: int | None = 32,
        ridge_alpha: float = 10.0, batch_size: int = 256, seed: int | None = None,
        on_progress: ProgressFn | None = None) -> Values:
    """Leave-one-out values v(D) - v(D without row i) of the ridge source classifier (exact downdates).

    Args:
        utility: "neg_mse" (minus the squared error of the class scores; the default), "log_likelihood", or
            "accuracy": with a few hundred rows or more, removing one row almost never changes accuracy, so
            accuracy-LOO is mostly ties (benchmarks/RESULTS.md, "Measurements behind defaults").
        n_components: PCA dimensions fitted on the training rows, then standardised (as in TS-DShapley).
        ridge_alpha: L2 penalty of the ridge classifier.
        batch_size: Rows downdated at once (memory: batch_size x |V| x classes floats).
        seed: Unused (the method is exact).

    Returns:
        Values (counts 1, stderr NaN).
    """
    t0 = time.perf_counter()
    check_finite(train)
    check_finite(valid, "validation embeddings")
    check_classes(train, valid)
    Z, Zv = source_features(train.X, valid.X, n_components=n_components)
    n_classes = int(max(train.y.max(), valid.y.max()) + 1)
    A, Av = augment(Z), augment(Zv)
    Y = np.eye(n_classes)[train.y]
    Ginv = np.linalg.inv(A.T @ A + ridge_alpha * np.eye(A.shape[1]))
    W = Ginv @ A.T @ Y
    S = Av @ W  # (|V|, c)
    v_full = ridge_utility(Z, train.y, Zv, valid.y, n_classes=n_classes, alpha=ridge_alpha, utility=utility)
    U = A @ Ginv  # rows u_i^T
    h = (U * A).sum(1)
    R = (Y - A @ W) / (1.0 - h)[:, None]  # (n, c)
    VU = Av @ U.T  # (|V|, n)
    n = len(train)
    vals = np.empty(n)
    counts = np.bincount(train.y, minlength=n_classes)
    for b0 in range(0, n, batch_size):
        sl = slice(b0, min(n, b0 + batch_size))
        S_minus = S[None, :, :] - VU[:, sl].T[:, :, None] * R[sl][:, None, :]  # (b, |V|, c)
        v_minus = score_utility(S_minus, valid.y, utility)
        # a row whose removal leaves one class only: the downdated ridge is valid, but v is the constant rule
        lone = counts[train.y[sl]] == 1
        if lone.any():
            for i in np.flatnonzero(lone):
                keep = np.arange(n) != b0 + i
                v_minus[i] = ridge_utility(Z[keep], train.y[keep], Zv, valid.y, n_classes=n_classes,
                                           alpha=ridge_alpha, utility=utility)
        vals[sl] = v_full - v_minus
        if on_progress:
            on_progress(sl.stop / n, "loo", None)
    return Values(uids=np.asarray(train.uids), values=vals, stderr=np.full(n, np.nan),
                  counts=np.ones(n, np.int64), method="loo",
                  params={"utility": utility, "n_components": n_components, "ridge_alpha": ridge_alpha,
                          "n_valid": len(valid)},
                  seconds=time.perf_counter() - t0)
