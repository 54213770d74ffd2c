"""KNN-Shapley reads the training matrix in blocks (it may be memory-mapped) and never holds it whole in float64:
the values do not depend on the block sizes, bit for bit."""
from __future__ import annotations

import sys

import numpy as np

from core.valuation import knn_shapley
from core.valuation.base import Split

knn_mod = sys.modules["core.valuation.knn_shapley"]


def reference_values(train: Split, valid: Split, k: int, batch_size: int = 256) -> np.ndarray:
    """The vectorised algorithm as it was before blocks: whole float64 matrix, (batch, n) arrays, vals.sum(0)."""
    n = len(train)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    factor = np.minimum(k, ranks[:-1]) / (ranks[:-1] * k)
    sums = np.zeros(n)
    X_train = np.asarray(train.X, dtype=np.float64)
    X_sq = (X_train**2).sum(1)
    for b0 in range(0, len(valid), batch_size):
        vb = valid.take(slice(b0, b0 + batch_size))
        A = np.asarray(vb.X, dtype=np.float64)
        order = np.argsort((A**2).sum(1)[:, None] - 2.0 * A @ X_train.T + X_sq[None, :], axis=1, kind="stable")
        match = (train.y[order] == vb.y[:, None]).astype(np.float64)
        s = np.empty_like(match)
        s[:, -1] = match[:, -1] / n
        inc = (match[:, :-1] - match[:, 1:]) * factor[None, :]
        s[:, :-1] = s[:, -1:] + np.cumsum(inc[:, ::-1], axis=1)[:, ::-1]
        vals = np.empty_like(s)
        np.put_along_axis(vals, order, s, axis=1)
        sums += vals.sum(0)
    return sums / len(valid)


def test_values_are_identical_for_any_block_sizes_and_a_memory_mapped_matrix(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    n, m, d = 1500, 300, 48
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[100:150] = X[:50]  # exact ties in distance: the stable order must be kept
    y = rng.integers(0, 3, n)
    Xv, yv = rng.normal(size=(m, d)).astype(np.float32), rng.integers(0, 3, m)
    Xv[:3] = X[:3]
    np.save(tmp_path / "X.npy", X)
    train = Split(np.array([f"r{i}" for i in range(n)]), X, y)
    mapped = Split(train.uids, np.load(tmp_path / "X.npy", mmap_mode="r"), y)
    valid = Split(np.array([f"v{i}" for i in range(m)]), Xv, yv)
    monkeypatch.setattr(knn_mod, "_ROW_BLOCK", 10**9)  # one block: the whole matrix at once, as before blocks
    monkeypatch.setattr(knn_mod, "_VALID_BLOCK", 10**9)
    whole = knn_shapley(train, valid=valid, k=7)
    np.testing.assert_array_equal(whole.values, reference_values(train, valid, 7))
    for row_block, valid_block in ((256, 1), (1000, 64), (97, 13)):
        monkeypatch.setattr(knn_mod, "_ROW_BLOCK", row_block)
        monkeypatch.setattr(knn_mod, "_VALID_BLOCK", valid_block)
        got = knn_shapley(mapped, valid=valid, k=7)
        np.testing.assert_array_equal(got.values, whole.values)
        np.testing.assert_array_equal(got.stderr, whole.stderr)
    assert np.isclose(whole.values.sum(), knn_mod.knn_utility(train, valid, k=7))
