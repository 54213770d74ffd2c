"""Valuation: one plain function per method, `Split` in, `Values` out (see base.py), and the dataset-level runner.

`REGISTRY` (registry.py) holds one `MethodSpec` per method; `METHODS` maps its keys to the functions. Every method has the
signature ``method(train: Split, *, valid: Split, seed: int | None = None, on_progress: ProgressFn | None = None,
**options) -> Values``. `value_dataset` values every row of a dataset (validation split, swapped roles, consensus),
`suggest_removal` is TS-DShapley's removal-index search and `audit_dataset` the flipped-label self-check.
"""
from __future__ import annotations

from typing import Callable

from core.valuation.base import Option, ProgressFn, Split, Values, values_from_samples
from core.valuation.consensus import consensus
from core.valuation.data_oob import data_oob
from core.valuation.knn_shapley import knn_shapley
from core.valuation.label_quality import label_quality
from core.valuation.loo import loo
from core.valuation.random_baseline import random_values
from core.valuation.registry import DEFAULT_METHOD, REGISTRY, MethodSpec, method_key
from core.valuation.tmc import tmc_shapley
from core.valuation.ts_dshapley import ts_dshapley

METHODS: dict[str, Callable[..., Values]] = {k: s.function for k, s in REGISTRY.items()}

from core.valuation.audit import audit_dataset, flip_labels  # noqa: E402
from core.valuation.removal import RemovalSuggestion, suggest_removal  # noqa: E402
from core.valuation.validation import value_dataset  # noqa: E402

__all__ = ["METHODS", "REGISTRY", "MethodSpec", "Option", "DEFAULT_METHOD", "ProgressFn", "Split", "Values", "values_from_samples", "value_dataset",
           "method_key", "suggest_removal", "RemovalSuggestion", "audit_dataset", "flip_labels", "ts_dshapley",
           "tmc_shapley", "knn_shapley", "data_oob", "loo", "label_quality", "consensus", "random_values"]
