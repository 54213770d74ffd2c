"""Shared fixtures. Everything runs offline; the packaged MiniLM is the only real model used."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from core.valuation.base import Split  # noqa: E402
from core.workspace import Workspace  # noqa: E402


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    """An empty workspace in a temp folder, also set as WINNOW_HOME for code that reads the environment."""
    monkeypatch.setenv("WINNOW_HOME", str(tmp_path / "ws"))
    return Workspace(tmp_path / "ws")


def make_blobs(n: int = 60, n_classes: int = 3, dim: int = 8, flip: float = 0.1, seed: int = 0,
               spread: float = 1.0) -> tuple[Split, np.ndarray]:
    """Separable Gaussian blobs with a seeded fraction of labels flipped; returns (split, flipped mask)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4.0, size=(n_classes, dim))
    y_true = np.arange(n) % n_classes
    X = centers[y_true] + rng.normal(0, spread, size=(n, dim))
    flipped = np.zeros(n, dtype=bool)
    idx = rng.choice(n, size=int(round(flip * n)), replace=False)
    flipped[idx] = True
    y = y_true.copy()
    y[idx] = (y_true[idx] + rng.integers(1, n_classes, size=len(idx))) % n_classes
    uids = np.array([f"r{i}" for i in range(n)])
    return Split(uids, X.astype(np.float64), y.astype(np.int64)), flipped


@pytest.fixture
def tiny_split() -> tuple[Split, np.ndarray]:
    """60 rows, 3 labels, 8-d blobs, 10 % flipped (STYLE.md §8)."""
    return make_blobs()
