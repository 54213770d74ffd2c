"""Fixtures of the valuation tests: blobs with a clean validation set drawn from the same centres."""
from __future__ import annotations

import numpy as np
import pytest

from core.valuation.base import Split


def blobs_pair(n: int = 200, n_valid: int = 90, n_classes: int = 3, dim: int = 8, flip: float = 0.1,
               seed: int = 0, spread: float = 1.5) -> tuple[Split, Split, np.ndarray]:
    """(train with a seeded `flip` share of labels flipped, clean validation, flipped mask)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3.0, size=(n_classes, dim))

    def draw(m: int, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        y = np.arange(m) % n_classes
        X = centers[y] + rng.normal(0, spread, size=(m, dim))
        return np.array([f"{prefix}{i}" for i in range(m)]), X, y.astype(np.int64)

    u, X, y = draw(n, "r")
    flipped = np.zeros(n, dtype=bool)
    idx = rng.choice(n, size=int(round(flip * n)), replace=False)
    flipped[idx] = True
    y = y.copy()
    y[idx] = (y[idx] + rng.integers(1, n_classes, size=len(idx))) % n_classes
    uv, Xv, yv = draw(n_valid, "v")
    return Split(u, X, y), Split(uv, Xv, yv), flipped


def auc_low(values: np.ndarray, flipped: np.ndarray) -> float:
    """ROC-AUC of low value for the flipped rows."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(flipped, -np.asarray(values)))


@pytest.fixture
def blobs():
    return blobs_pair()


@pytest.fixture
def binary_blobs():
    return blobs_pair(n=200, n_valid=80, n_classes=2, spread=2.5)


@pytest.fixture
def make_pair():
    """The `blobs_pair` builder, for tests that need other sizes."""
    return blobs_pair


@pytest.fixture
def auc():
    """The `auc_low` scorer."""
    return auc_low
