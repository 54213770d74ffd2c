"""Bounded memory: the source features of a large training set are the same PCA, read in row blocks."""
from __future__ import annotations

import numpy as np

from core.valuation import source


def test_the_blockwise_pca_gives_the_features_of_scikit_learns_pca(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(3000, 48)) @ rng.normal(size=(48, 48))).astype(np.float32)
    Xv = rng.normal(size=(50, 48)).astype(np.float32)
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")  # as the app reads embeddings
    whole = source.source_features(X, Xv, n_components=8)
    monkeypatch.setattr(source, "BLOCK_ROWS", 700)  # several blocks, the last one short
    blocks = source.source_features(mapped, Xv, n_components=8, blockwise_rows=1000)
    for a, b in zip(whole, blocks):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7)
