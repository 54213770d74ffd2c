"""Every valuation method, one entry each: what the CLI flags, the Value page's widgets and descriptions, option
checks and the dataset-level runner know about a method comes from its `MethodSpec` here.

Adding a method: write its function in its own file (options declared with `checked`), add one `MethodSpec` below,
and add its key to the contract test's expectations (tests/valuation/test_registry.py runs every entry).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from core.errors import DataError, OptionError
from core.valuation.base import Option, Values
from core.valuation.consensus import consensus
from core.valuation.data_oob import data_oob
from core.valuation.knn_shapley import knn_shapley
from core.valuation.label_quality import label_quality
from core.valuation.loo import loo
from core.valuation.random_baseline import random_values
from core.valuation.tmc import tmc_shapley
from core.valuation.ts_dshapley import ts_dshapley


@dataclass(frozen=True)
class MethodSpec:
    """One valuation method.

    key: registry key (snake_case; the CLI and the app show it with hyphens). function: the method,
    ``fn(train, *, valid, seed, on_progress, **options) -> Values``. needs_valid: it scores against validation rows
    (else `valid` may be None and all rows are valued at once). iterative: it takes `continue_from` and passes
    partial Values to `on_progress` (resumable). about: one line with its paper. The options are the function's
    own (`checked`), with their defaults from its signature.
    """

    key: str
    function: Callable[..., Values]
    needs_valid: bool
    iterative: bool
    about: str

    def __post_init__(self) -> None:
        params = inspect.signature(self.function).parameters
        if "valid" not in params:
            raise TypeError(f"{self.key}: a method takes valid=")
        if not self.needs_valid and params["valid"].default is inspect.Parameter.empty:
            raise TypeError(f"{self.key}: needs_valid=False but valid= has no default")
        if self.iterative and "continue_from" not in params:
            raise TypeError(f"{self.key}: iterative=True but the function takes no continue_from=")

    @property
    def name(self) -> str:
        """The name users type and see: the key with hyphens."""
        return self.key.replace("_", "-")

    @property
    def options(self) -> tuple[Option, ...]:
        return tuple(getattr(self.function, "options", ()))

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options checked and converted; OptionError for an unknown name or a value out of range."""
        known = {o.name: o for o in self.options}
        out: dict[str, Any] = {}
        for name, value in options.items():
            if name not in known:
                allowed = ", ".join(known) or "none"
                raise OptionError(f"{self.name} takes no option {name!r}; its options: {allowed}")
            out[name] = known[name].check(value, self.function.__name__)
        return out


REGISTRY: dict[str, MethodSpec] = {s.key: s for s in (
    MethodSpec("ts_dshapley", ts_dshapley, needs_valid=True, iterative=True,
               about="TS-DShapley (Schoch et al. 2023): Shapley values of a linear source classifier on many small "
                     "stratified subsets. The default."),
    MethodSpec("tmc_shapley", tmc_shapley, needs_valid=True, iterative=True,
               about="TMC-Shapley (Ghorbani & Zou 2019) on the whole set: the reference; slow past a few hundred "
                     "rows."),
    MethodSpec("knn_shapley", knn_shapley, needs_valid=True, iterative=False,
               about="KNN-Shapley (Jia et al. 2019): exact closed form for a k-nearest-neighbour classifier. "
                     "Seconds."),
    MethodSpec("data_oob", data_oob, needs_valid=False, iterative=False,
               about="Data-OOB (Kwon & Zou 2023): out-of-bag accuracy of bagged logistic regressions."),
    MethodSpec("loo", loo, needs_valid=True, iterative=False,
               about="Leave-one-out (Cook 1977) with the source classifier: cheap, noisy."),
    MethodSpec("label_quality", label_quality, needs_valid=False, iterative=False,
               about="Label quality (Northcutt et al. 2021): cross-fitted confidence in each given label "
                     "(cleanlab's score)."),
    MethodSpec("consensus", consensus, needs_valid=True, iterative=False,
               about="Consensus: the rank average of several methods, weighted by how well each finds injected "
                     "label flips in this data (a cross-fitted self-check); keeps each member's rank per row."),
    MethodSpec("random", random_values, needs_valid=False, iterative=False,
               about="Random values: the floor every method should beat."),
)}
DEFAULT_METHOD = "ts_dshapley"
ALIASES = {"tmc": "tmc_shapley"}


def method_key(name: str) -> str:
    """Registry key of a method name given with hyphens or underscores; DataError when unknown."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise DataError(f"unknown valuation method {name!r}; choose from "
                        f"{', '.join(s.name for s in REGISTRY.values())}")
    return key


def spec(name: str) -> MethodSpec:
    """The MethodSpec of a method name (hyphens or underscores); DataError when unknown."""
    return REGISTRY[method_key(name)]


def all_options() -> dict[str, tuple[Option, list[MethodSpec]]]:
    """Every option name any method declares: (its first declaration, the methods that take it), in order."""
    out: dict[str, tuple[Option, list[MethodSpec]]] = {}
    for s in REGISTRY.values():
        for o in s.options:
            out.setdefault(o.name, (o, []))[1].append(s)
    return out
