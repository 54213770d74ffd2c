"""The self-check on the user's own data: flip a seeded share of labels, value, and see who finds them.

For each method: ROC-AUC of "low value" against "flipped", precision among the k lowest-valued rows where k is the
number flipped, and seconds. No peer ships this; it tells a user which method finds bad rows in *their* data.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError
from core.valuation.base import ProgressFn, Split, Values


def flip_labels(y: NDArray[np.int64], fraction: float, *, n_classes: int | None = None, seed: int = 0
                ) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """A copy of y with round(fraction * n) labels moved to another class (uniformly), and the flipped mask."""
    if not 0 < fraction < 0.5:
        raise DataError(f"--flip must be between 0 and 0.5 (got {fraction})")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(11,)))
    n_classes = int(n_classes or (y.max() + 1))
    if n_classes < 2:
        raise DataError("flipping labels needs at least two classes")
    k = max(1, int(round(fraction * len(y))))
    idx = rng.choice(len(y), size=k, replace=False)
    out = y.copy()
    out[idx] = (y[idx] + rng.integers(1, n_classes, size=k)) % n_classes
    mask = np.zeros(len(y), dtype=bool)
    mask[idx] = True
    return out, mask


def detection_scores(values: NDArray[np.floating], flipped: NDArray[np.bool_]) -> dict[str, float]:
    """ROC-AUC of -value for the flipped rows, and precision among the k lowest values (k = number flipped)."""
    from sklearn.metrics import roc_auc_score

    k = int(flipped.sum())
    lowest = np.argsort(values, kind="stable")[:k]
    return {"auc": float(roc_auc_score(flipped, -np.asarray(values))),
            "precision_at_k": float(flipped[lowest].mean()) if k else float("nan"), "n_flipped": k}


def audit_dataset(X: NDArray[np.floating], y: NDArray[np.int64], uids: Sequence[str] | NDArray[np.str_], *,
                  methods: Sequence[str] = ("ts_dshapley", "knn_shapley", "label_quality"), flip: float = 0.05,
                  valid: Split | None = None, seed: int = 0, classes: Sequence[str] | None = None,
                  method_options: dict[str, dict[str, Any]] | None = None,
                  on_progress: ProgressFn | None = None) -> tuple[list[dict[str, Any]], NDArray[np.bool_],
                                                                  dict[str, Values]]:
    """Flip `flip` of the labels in a copy, value it with each method, and score how well each finds the flips.

    Returns:
        (rows: one dict per method with method, auc, precision_at_k, n_flipped, seconds;
         the flipped mask; the Values of each method).
    """
    from core.valuation.validation import method_key, value_dataset

    keys = [method_key(m) for m in methods]
    n_classes = len(classes) if classes is not None else int(np.max(y) + 1)
    y_flipped, mask = flip_labels(np.asarray(y, dtype=np.int64), flip, n_classes=n_classes, seed=seed)
    rows, results = [], {}
    for i, key in enumerate(keys):
        def sub(f: float, msg: str, partial: Any = None, i: int = i) -> None:
            if on_progress:
                on_progress((i + f) / len(keys), msg, None)
        t0 = time.perf_counter()
        res = value_dataset(X, y_flipped, uids, method=key, valid=valid, seed=seed, classes=classes,
                            on_progress=sub, **dict((method_options or {}).get(key, {})))
        sec = time.perf_counter() - t0
        results[key] = res
        rows.append({"method": key.replace("_", "-"), **detection_scores(res.values, mask), "seconds": sec})
    return rows, mask, results
