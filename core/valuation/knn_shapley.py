"""KNN-Shapley: exact Shapley values of a K-nearest-neighbour classifier, in closed form.

Jia et al. *Efficient Task-Specific Data Valuation for Nearest Neighbor Algorithms*, VLDB 2019, arXiv 1908.08619.
For each validation row the training rows are sorted by distance and the exact recursion
s_N = 1[y_N = y_v] / N,  s_i = s_{i+1} + (1[y_i = y_v] - 1[y_{i+1} = y_v]) / K * min(K, i) / i
gives every row's Shapley value for the utility "share of the K nearest neighbours carrying the validation label";
values are averaged over the validation rows, so they sum to that utility of the full training set.
"""
from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from core.valuation.base import Option, ProgressFn, Split, Values, checked
from core.valuation.source import check_classes, check_finite


def knn_utility(train: Split, valid: Split, *, k: int = 10) -> float:
    """Mean over validation rows of the share of the k nearest training rows that carry its label."""
    d = _sqdist(valid.X, train.X)
    kk = min(k, len(train))
    nn = np.argsort(d, axis=1, kind="stable")[:, :kk]
    return float((train.y[nn] == valid.y[:, None]).sum(1).mean() / k)


def _sqdist(A: NDArray[np.floating], B: NDArray[np.floating],
            B_sq: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
    """Squared Euclidean distances (len(A), len(B)); `B_sq` = (B**2).sum(1) when the caller has it already."""
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if B_sq is None:
        B_sq = (B**2).sum(1)
    return (A**2).sum(1)[:, None] - 2.0 * A @ B.T + B_sq[None, :]


@checked(Option("k", int, "neighbours of the KNN classifier", low=1, high=100_000, label="Neighbours k"))
def knn_shapley(train: Split, *, valid: Split, k: int = 10, batch_size: int = 256, seed: int | None = None,
                on_progress: ProgressFn | None = None) -> Values:
    """Exact KNN-Shapley values (Euclidean distance on the embeddings as given).

    Args:
        k: Neighbours of the KNN classifier.
        batch_size: Validation rows processed at once (memory: batch_size x n floats).
        seed: Unused (the method is exact); accepted for a uniform interface.

    Returns:
        Values whose sum over the training rows equals `knn_utility(train, valid, k=k)`; stderr is the standard
        error over validation rows, count the number of validation rows.
    """
    t0 = time.perf_counter()
    check_finite(train)
    check_finite(valid, "validation embeddings")
    check_classes(train, valid)
    n = len(train)
    ranks = np.arange(1, n + 1, dtype=np.float64)  # 1-based rank i
    factor = np.minimum(k, ranks[:-1]) / (ranks[:-1] * k)  # min(K, i) / (i K) for i = 1..N-1
    sums = np.zeros(n)
    sumsq = np.zeros(n)
    # the training matrix in float64 and its squared norms once, not once per validation batch (one N x d copy)
    X_train = np.asarray(train.X, dtype=np.float64)
    X_sq = (X_train**2).sum(1)
    for b0 in range(0, len(valid), batch_size):
        vb = valid.take(slice(b0, b0 + batch_size))
        order = np.argsort(_sqdist(vb.X, X_train, X_sq), axis=1, kind="stable")  # (b, n)
        match = (train.y[order] == vb.y[:, None]).astype(np.float64)
        s = np.empty_like(match)
        s[:, -1] = match[:, -1] / n
        # s_i = s_{i+1} + (m_i - m_{i+1}) * factor_i : a reversed cumulative sum
        inc = (match[:, :-1] - match[:, 1:]) * factor[None, :]
        s[:, :-1] = s[:, -1:] + np.cumsum(inc[:, ::-1], axis=1)[:, ::-1]
        vals = np.empty_like(s)
        np.put_along_axis(vals, order, s, axis=1)
        sums += vals.sum(0)
        sumsq += (vals**2).sum(0)
        if on_progress:
            on_progress(min(1.0, (b0 + len(vb)) / len(valid)), "knn-shapley", None)
    m = len(valid)
    mean = sums / m
    var = np.maximum(sumsq / m - mean**2, 0.0) * m / max(m - 1, 1)
    se = np.sqrt(var / m) if m > 1 else np.full(n, np.nan)
    return Values(uids=np.asarray(train.uids), values=mean, stderr=se, counts=np.full(n, m, dtype=np.int64),
                  method="knn_shapley", params={"k": k, "n_valid": m}, seconds=time.perf_counter() - t0)
