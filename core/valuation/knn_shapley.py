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

_ROW_BLOCK = 16_384  # training rows converted to float64 at a time (48 MiB at d = 384)
_VALID_BLOCK = 64  # validation rows whose distances to every training row are held at once (64 x n float64)


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
    # The training matrix is read in row blocks (it may be memory-mapped) and never held whole in float64; each
    # validation batch is handled a few rows at a time, so the (rows, n) work arrays stay small. Every number is
    # computed as before (per-row norms and per-entry dot products do not depend on the blocks, and the batch's
    # rows are added to the sums one after another, as `vals.sum(0)` did), so the values are unchanged.
    X_sq = np.empty(n)
    for r0 in range(0, n, _ROW_BLOCK):
        X_sq[r0:r0 + _ROW_BLOCK] = (np.asarray(train.X[r0:r0 + _ROW_BLOCK], dtype=np.float64) ** 2).sum(1)
    y_train = np.asarray(train.y)
    for b0 in range(0, len(valid), batch_size):
        vb = valid.take(slice(b0, b0 + batch_size))
        batch_sum = np.zeros(n)
        batch_sq = np.zeros(n)
        for v0 in range(0, len(vb), _VALID_BLOCK):
            A = np.asarray(vb.X[v0:v0 + _VALID_BLOCK], dtype=np.float64)
            d = np.empty((len(A), n))
            A_sq = (A**2).sum(1)[:, None]
            for r0 in range(0, n, _ROW_BLOCK):
                B = np.asarray(train.X[r0:r0 + _ROW_BLOCK], dtype=np.float64)
                d[:, r0:r0 + len(B)] = A_sq - 2.0 * A @ B.T + X_sq[None, r0:r0 + len(B)]
            for j in range(len(A)):
                order = np.argsort(d[j], kind="stable")
                match = (y_train[order] == vb.y[v0 + j]).astype(np.float64)
                s = np.empty_like(match)
                s[-1] = match[-1] / n
                # s_i = s_{i+1} + (m_i - m_{i+1}) * factor_i : a reversed cumulative sum
                inc = (match[:-1] - match[1:]) * factor
                s[:-1] = s[-1:] + np.cumsum(inc[::-1])[::-1]
                vals = np.empty_like(s)
                vals[order] = s
                batch_sum += vals
                batch_sq += vals**2
            del d
        sums += batch_sum
        sumsq += batch_sq
        if on_progress:
            on_progress(min(1.0, (b0 + len(vb)) / len(valid)), "knn-shapley", None)
    m = len(valid)
    mean = sums / m
    var = np.maximum(sumsq / m - mean**2, 0.0) * m / max(m - 1, 1)
    se = np.sqrt(var / m) if m > 1 else np.full(n, np.nan)
    return Values(uids=np.asarray(train.uids), values=mean, stderr=se, counts=np.full(n, m, dtype=np.int64),
                  method="knn_shapley", params={"k": k, "n_valid": m}, seconds=time.perf_counter() - t0)
