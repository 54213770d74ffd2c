"""Selection strategies under a budget: random, stratified, top_value, drop_negative, kmq, clean_kmq and iterative.

kMQ and iterative refinement follow *Diversify and Conquer: Diversity-Centric Data Selection with Iterative
Refinement* (arXiv 2409.11378) as DESIGN.md fixes it. The budget b (a count, or a fraction of the rows
not removed) is split over groups (clusters for kmq, classes for stratified) in proportion to eligible size x
weight, by exact water-filling with largest-remainder rounding: a group smaller than its share is taken whole and
its shortfall passed on, pinned rows are always in and count toward their group's share, so every subset has exactly
b rows. Inside a group rows are drawn without replacement with p proportional to exp(q / T) (q = rank-normalised
quality in [0, 1]) through Gumbel-top-k keys: each row's key q / T + Gumbel noise is drawn once per seed, so a
group's draw of m rows is its m highest keys. That makes a new budget or weight pure array work (`SelectionPlan`,
`preview`) and the draws inside a cluster nested: a larger share adds rows to the cluster, never swaps them.

Iterative refinement runs N rounds of about (b - pinned) / N rows: round 0 is kMQ with equal weights; after each
round a classifier trained on everything selected so far (logistic regression by default; the caller may pass any
`train_fn`, such as `core.experiment.target_model_train_fn`, the fine-tuned target model, as the slow option) scores
up to 50 not-yet-selected rows per cluster with
S = J(y_given) - sum_y p_model(y) J(y), J the judge (cross-fitted label confidence); the cluster score is the mean S
shrunk toward the global mean, and the weights become w * exp(z(score) / T_w), renormalised (T_w = 1); the next
round draws from the remaining pool. A cluster whose given labels the judge doubts loses weight.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError
from core.sampling import apportion
from core.selection.clusters import Clusters
from core.selection.quality import cross_fitted_proba, fit_proba, rank_normalise
from core.valuation.base import Values

STRATEGIES = ("random", "stratified", "top_value", "drop_negative", "kmq", "clean_kmq", "iterative")
NEEDS_VALUES = ("top_value", "drop_negative", "clean_kmq")  # rank rows by value: no values, no subset
NEEDS_CLUSTERS = ("kmq", "clean_kmq", "iterative")  # spread over clusters (the others use clusters only as labels)
Strategy = Literal["random", "stratified", "top_value", "drop_negative", "kmq", "clean_kmq", "iterative"]
TEMPERATURE = 0.1
# T of the re-weighting w * exp(z / T). DESIGN.md writes the in-cluster T there too, but z is a z-score, so 0.1
# multiplies weights by e^10 per standard deviation: every weight collapsed onto one or two clusters after a round,
# which were then taken whole, flipped rows included (benchmarks/RESULTS.md, "Measurements behind defaults").
REWEIGHT_TEMPERATURE = 1.0
ROUNDS = 3
N_SCORE = 50  # rows scored per cluster and round
SHRINK = 10.0  # a cluster score counts as many rows of the global mean (shrinkage toward it)

# train_fn(train_idx, score_idx) -> (len(score_idx), n_classes) probabilities of a model trained on the rows
# train_idx (row positions) and applied to the rows score_idx; the hook for the fine-tuned target model.
TrainFn = Callable[[NDArray[np.int64], NDArray[np.int64]], NDArray[np.floating]]


@dataclass(frozen=True)
class Selection:
    """A subset and why each row is in it."""

    uids: NDArray[np.str_]  # (b,) chosen rows
    clusters: NDArray[np.int64]  # (b,) cluster of each row, -1 without clusters
    quality: NDArray[np.float64]  # (b,) the quality it was drawn by, in [0, 1]; nan when none
    rounds: NDArray[np.int64]  # (b,) round that chose it (0 for one-shot strategies and pinned rows)
    why: NDArray[np.object_]  # (b,) one line each
    strategy: str
    params: dict[str, Any] = field(default_factory=dict)  # JSON-safe, enough to repeat the selection
    history: list[dict[str, Any]] = field(default_factory=list)  # iterative: per round weights and scores
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.uids)

    @cached_property
    def reasons(self) -> dict[str, dict[str, Any]]:
        """uid -> {cluster, quality, round, why}."""
        return {str(u): {"cluster": None if c < 0 else int(c), "quality": None if np.isnan(q) else float(q),
                         "round": int(r), "why": str(w)}
                for u, c, q, r, w in zip(self.uids, self.clusters, self.quality, self.rounds, self.why)}

    def to_frame(self):  # -> pandas.DataFrame
        """Columns uid, cluster, reason, quality, round (the CSV the CLI writes and the run frame)."""
        import pandas as pd

        return pd.DataFrame({"uid": self.uids.astype(str), "cluster": self.clusters.astype(np.int64),
                             "reason": self.why.astype(str), "quality": self.quality,
                             "round": self.rounds.astype(np.int64)})


@dataclass(frozen=True)
class Preview:
    """What a selection would hold, computed without saving it."""

    n: int  # rows in the subset (= budget)
    per_cluster: dict[int, int]  # cluster id -> rows (empty without clusters)
    per_class: dict[str, int]  # class -> rows (empty without labels)
    added: int  # rows not in the last saved subset
    removed: int  # rows of the last saved subset left out
    kept: int  # rows in both
    seconds: float


# ----------------------------------------------------------------------------------------------- helpers
def resolve_budget(budget: int | float | str, n_eligible: int, *, n_rows: int | None = None) -> int:
    """The budget as a row count: an int is a count; a float in (0, 1] or "30%" is a fraction of eligible rows.

    Raises:
        DataError: If the budget is not positive or exceeds the eligible rows.
    """
    if isinstance(budget, bool):
        raise TypeError("budget must be a count or a fraction, not a bool")
    text = str(budget).strip()
    try:
        if isinstance(budget, str):
            if text.endswith("%"):
                b = float(text[:-1]) / 100.0
                count = int(round(b * n_eligible)) if 0 < b <= 1 else -1
            elif any(ch in text for ch in ".eE"):
                b = float(text)
                count = int(round(b * n_eligible)) if 0 < b <= 1 else (int(b) if float(b).is_integer() else -1)
            else:
                count = int(text)
        elif isinstance(budget, (float, np.floating)):
            count = int(round(float(budget) * n_eligible)) if 0 < budget <= 1 else (
                int(budget) if float(budget).is_integer() else -1)
        else:
            count = int(budget)
    except ValueError:
        raise DataError(f"budget {text!r} is neither a row count (5000) nor a fraction (0.3 or 30%)") from None
    removed = "" if n_rows is None else f" ({n_rows} rows, {n_rows - n_eligible} removed)"
    if count < 1:
        raise DataError(f"budget {text} must be a positive row count or a fraction in (0, 1]")
    if count > n_eligible:
        raise DataError(f"budget {text} exceeds the {n_eligible} eligible rows{removed}; lower the budget")
    return count


def _positions(uids: NDArray[np.str_], wanted: Sequence[str] | set[str] | frozenset[str] | None) -> NDArray[np.int64]:
    """Row positions of the wanted uids that exist (unknown uids are ignored)."""
    import pandas as pd

    if wanted is None or len(wanted) == 0:
        return np.zeros(0, dtype=np.int64)
    idx = pd.Index(uids).get_indexer(pd.Index([str(u) for u in wanted]))
    return np.unique(idx[idx >= 0]).astype(np.int64)


def _masks(uids: NDArray[np.str_], pinned: Sequence[str],
           removed: Sequence[str]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    n = len(uids)
    pin = np.zeros(n, dtype=bool)
    pin[_positions(uids, pinned)] = True
    rem = np.zeros(n, dtype=bool)
    rem[_positions(uids, removed)] = True
    both = pin & rem
    if both.any():
        ex = ", ".join(map(str, uids[both][:5]))
        raise DataError(f"{int(both.sum())} rows are both pinned and removed (e.g. {ex}); clear one decision")
    return pin, ~rem


def align_values(values: Values | NDArray[np.floating], uids: NDArray[np.str_]) -> NDArray[np.float64]:
    """Values aligned with `uids`.

    Raises:
        DataError: If a uid has no value, or the values name uids that the data lacks.
    """
    if not isinstance(values, Values):
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (len(uids),):
            raise TypeError(f"values have shape {arr.shape}; expected ({len(uids)},)")
        return arr
    import pandas as pd

    idx = pd.Index(values.uids.astype(str)).get_indexer(pd.Index(np.asarray(uids, dtype=str)))
    missing = idx < 0
    if missing.any():
        ex = ", ".join(map(str, np.asarray(uids)[missing][:5]))
        raise DataError(f"the values ({values.method}) miss {int(missing.sum())} of the {len(uids)} rows "
                        f"(e.g. {ex}); value this dataset, or pass values whose uids match it")
    extra = len(values.uids) - len(np.unique(idx))
    if extra > 0:
        known = set(np.asarray(uids, dtype=str).tolist())
        ex = ", ".join([str(u) for u in values.uids if str(u) not in known][:5])
        raise DataError(f"the values ({values.method}) name {extra} uids that the data lacks (e.g. {ex}); "
                        "they belong to another dataset")
    return np.asarray(values.values, dtype=np.float64)[idx]


def _weights_vector(weights: Mapping[int, float] | None, k: int) -> NDArray[np.float64]:
    w = np.ones(k)
    for c, v in (weights or {}).items():
        try:
            ci = int(c)
        except (TypeError, ValueError):
            raise DataError(f"cluster id {c!r} in weights is not an integer") from None
        if not 0 <= ci < k:
            raise DataError(f"unknown cluster id {ci} in weights; clusters are 0..{k - 1}")
        v = float(v)
        if not np.isfinite(v) or v < 0:
            raise DataError(f"weight {v} for cluster {ci} must be a number >= 0")
        w[ci] = v
    return w


def _gumbel_keys(q: NDArray[np.float64], temperature: float, rng: np.random.Generator) -> tuple[NDArray, NDArray]:
    """(primary, secondary) sort keys, descending: p ∝ exp(q / T) without replacement via Gumbel-top-k."""
    g = rng.gumbel(size=len(q))
    if temperature is None or np.isinf(temperature):
        return g, np.zeros_like(g)
    if temperature <= 0:
        return q, g  # top-k, ties broken at random
    return q / temperature + g, np.zeros_like(g)


def _group_ranks(candidate: NDArray[np.bool_], group: NDArray[np.int64], n_groups: int,
                 key1: NDArray[np.float64], key2: NDArray[np.float64]) -> NDArray[np.int64]:
    """Rank of each candidate inside its group by descending (key1, key2); n for non-candidates."""
    n = len(group)
    idx = np.flatnonzero(candidate)
    order = idx[np.lexsort((idx, -key2[idx], -key1[idx], group[idx]))]
    g = group[order]
    starts = np.searchsorted(g, np.arange(n_groups))
    rank = np.full(n, n, dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts[g]
    return rank


def _to_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


# ----------------------------------------------------------------------------------------------- plans
class SelectionPlan:
    """Everything a one-shot strategy needs, precomputed, so any budget or weights is array work.

    `select(budget, weights)` returns the Selection; `preview(budget, weights, last)` its sizes and diff in
    milliseconds. Build one with `plan_random`, `plan_stratified`, `plan_top_value` or `plan_kmq`.
    """

    def __init__(self, *, strategy: str, uids: NDArray[np.str_], group: NDArray[np.int64], n_groups: int,
                 key1: NDArray[np.float64], key2: NDArray[np.float64], quality: NDArray[np.float64],
                 pinned: NDArray[np.bool_], eligible: NDArray[np.bool_], cluster: NDArray[np.int64] | None,
                 y: NDArray[np.int64] | None, classes: Sequence[str] | None, params: dict[str, Any],
                 weighted: bool, describe: Callable[[NDArray[np.int64]], list[str]]) -> None:
        self.strategy, self.uids, self.group, self.n_groups = strategy, uids, group, n_groups
        self.quality, self.pinned, self.eligible = quality, pinned, eligible
        self.cluster = cluster if cluster is not None else np.full(len(uids), -1, dtype=np.int64)
        self.y, self.params, self.weighted, self._describe = y, params, weighted, describe
        self.classes = list(classes) if classes is not None else (
            [str(c) for c in range(int(y.max()) + 1)] if y is not None and len(y) else None)
        candidate = eligible & ~pinned
        self.rank = _group_ranks(candidate, group, n_groups, key1, key2)
        self.cand = np.bincount(group[candidate], minlength=n_groups).astype(np.int64)
        self.pin = np.bincount(group[pinned], minlength=n_groups).astype(np.int64)
        self.size = np.bincount(group[eligible], minlength=n_groups).astype(np.float64)
        self.n_eligible = int(eligible.sum())
        self.n_clusters = int(self.cluster.max()) + 1 if (self.cluster >= 0).any() else 0
        self._last: tuple[Any, NDArray[np.bool_]] | None = None

    def allocation(self, budget: int | float | str, weights: Mapping[int, float] | None = None
                   ) -> tuple[int, NDArray[np.int64]]:
        """(b, rows per group) for this budget and weights."""
        b = resolve_budget(budget, self.n_eligible, n_rows=len(self.uids))
        if weights and not self.weighted:
            raise DataError(f"cluster weights apply to kmq and iterative, not {self.strategy}")
        w = _weights_vector(weights, self.n_groups) if self.weighted else np.ones(self.n_groups)
        pi = self.size * w
        lo, hi = self.pin, self.pin + self.cand
        if b < lo.sum():
            raise DataError(f"{int(lo.sum())} pinned rows exceed the budget of {b}; raise the budget or unpin rows")
        cap = np.where(pi > 0, hi, lo).sum()
        if b > cap:
            raise DataError(f"budget {b} exceeds the {int(cap)} rows left once clusters with weight 0 are "
                            "emptied; lower the budget or raise those weights")
        return b, apportion(pi, lo, hi, b)

    def mask(self, budget: int | float | str, weights: Mapping[int, float] | None = None) -> NDArray[np.bool_]:
        """(n,) True for the chosen rows."""
        _, alloc = self.allocation(budget, weights)
        take = alloc - self.pin
        return self.pinned | (self.rank < take[self.group])

    def _last_mask(self, last: Any) -> NDArray[np.bool_] | None:
        if last is None:
            return None
        if self._last is not None and self._last[0] is last:
            return self._last[1]
        if isinstance(last, np.ndarray) and last.dtype == bool:
            m = last
        else:
            m = np.zeros(len(self.uids), dtype=bool)
            m[_positions(self.uids, list(last.uids if isinstance(last, Selection) else last))] = True
        self._last = (last, m)
        return m

    def preview(self, budget: int | float | str, weights: Mapping[int, float] | None = None, *,
                last: Selection | Sequence[str] | NDArray[np.bool_] | None = None) -> Preview:
        """Sizes per cluster and class, and the difference from `last` (the last saved subset), without saving."""
        t0 = time.perf_counter()
        m = self.mask(budget, weights)
        per_cluster: dict[int, int] = {}
        if self.n_clusters:
            counts = np.bincount(self.cluster[m & (self.cluster >= 0)], minlength=self.n_clusters)
            per_cluster = {int(c): int(v) for c, v in enumerate(counts)}
        per_class: dict[str, int] = {}
        if self.y is not None and self.classes is not None:
            counts = np.bincount(self.y[m], minlength=len(self.classes))
            per_class = {self.classes[c]: int(v) for c, v in enumerate(counts)}
        lm = self._last_mask(last)
        added = int(m.sum()) if lm is None else int((m & ~lm).sum())
        dropped = 0 if lm is None else int((lm & ~m).sum())
        kept = 0 if lm is None else int((lm & m).sum())
        return Preview(n=int(m.sum()), per_cluster=per_cluster, per_class=per_class, added=added, removed=dropped,
                       kept=kept, seconds=time.perf_counter() - t0)

    def select(self, budget: int | float | str, weights: Mapping[int, float] | None = None) -> Selection:
        """The Selection for this budget and weights."""
        t0 = time.perf_counter()
        b, _ = self.allocation(budget, weights)
        m = self.mask(b, weights)
        idx = np.flatnonzero(m)
        # pinned first, then by group and draw order
        idx = idx[np.lexsort((self.rank[idx], self.group[idx], ~self.pinned[idx]))]
        why = np.asarray(self._describe(idx), dtype=object)
        why[self.pinned[idx]] = "pinned: a keep decision"
        params = dict(self.params, budget=int(b), budget_requested=_to_json(budget),
                      weights={str(k): float(v) for k, v in (weights or {}).items()},
                      n_pinned=int(self.pinned.sum()), n_removed=int((~self.eligible).sum()))
        return Selection(uids=self.uids[idx], clusters=self.cluster[idx], quality=self.quality[idx],
                         rounds=np.zeros(len(idx), dtype=np.int64), why=why, strategy=self.strategy,
                         params=_to_json(params), seconds=time.perf_counter() - t0)


def preview(plan: SelectionPlan, budget: int | float | str, weights: Mapping[int, float] | None = None, *,
            last: Selection | Sequence[str] | NDArray[np.bool_] | None = None) -> Preview:
    """Sizes per cluster and class of `plan`'s subset for this budget and weights, and its difference from `last`
    (the last saved subset), without saving: array work only, for a slider (see `SelectionPlan.preview`)."""
    return plan.preview(budget, weights, last=last)


def _uids_of(uids: Sequence[str] | None, clusters: Clusters | None, values: Values | None = None) -> NDArray[np.str_]:
    if clusters is not None:
        return np.asarray(clusters.uids, dtype=str)
    if uids is not None:
        return np.asarray([str(u) for u in uids])
    if values is not None:
        return np.asarray(values.uids, dtype=str)
    raise TypeError("pass uids or clusters")


def plan_random(uids: Sequence[str] | None = None, *, clusters: Clusters | None = None, pinned: Sequence[str] = (),
                removed: Sequence[str] = (), seed: int | None = None) -> SelectionPlan:
    """Uniform random draw (see `select_random`)."""
    u = _uids_of(uids, clusters)
    pin, elig = _masks(u, pinned, removed)
    rng = np.random.default_rng(seed)
    k1, k2 = _gumbel_keys(np.zeros(len(u)), np.inf, rng)
    return SelectionPlan(strategy="random", uids=u, group=np.zeros(len(u), dtype=np.int64), n_groups=1, key1=k1,
                         key2=k2, quality=np.full(len(u), np.nan), pinned=pin, eligible=elig,
                         cluster=None if clusters is None else clusters.labels, y=None, classes=None,
                         params={"strategy": "random", "seed": seed}, weighted=False,
                         describe=lambda idx: ["random draw"] * len(idx))


def plan_stratified(uids: Sequence[str] | None, y: Sequence[int], *, classes: Sequence[str] | None = None,
                    clusters: Clusters | None = None, pinned: Sequence[str] = (), removed: Sequence[str] = (),
                    seed: int | None = None) -> SelectionPlan:
    """Random draw that keeps the label proportions of the eligible rows (see `select_stratified`)."""
    u = _uids_of(uids, clusters)
    yy = np.asarray(y, dtype=np.int64)
    pin, elig = _masks(u, pinned, removed)
    rng = np.random.default_rng(seed)
    k1, k2 = _gumbel_keys(np.zeros(len(u)), np.inf, rng)
    n_cls = int(yy.max()) + 1 if len(yy) else 1
    names = list(classes) if classes is not None else [str(c) for c in range(n_cls)]
    return SelectionPlan(strategy="stratified", uids=u, group=yy, n_groups=n_cls, key1=k1, key2=k2,
                         quality=np.full(len(u), np.nan), pinned=pin, eligible=elig,
                         cluster=None if clusters is None else clusters.labels, y=yy, classes=names,
                         params={"strategy": "stratified", "seed": seed}, weighted=False,
                         describe=lambda idx: [f"stratified draw, class {names[yy[i]]}" for i in idx])


def plan_top_value(values: Values | NDArray[np.floating], *, uids: Sequence[str] | None = None,
                   clusters: Clusters | None = None, pinned: Sequence[str] = (), removed: Sequence[str] = (),
                   seed: int | None = None) -> SelectionPlan:
    """Highest values first (see `select_top_value`)."""
    u = _uids_of(uids, clusters, values if isinstance(values, Values) else None)
    v = align_values(values, u)
    v = np.where(np.isnan(v), -np.inf, v)
    pin, elig = _masks(u, pinned, removed)
    q = rank_normalise(np.where(np.isinf(v), np.nan, v))
    ranks = np.empty(len(v), dtype=np.int64)
    order = np.lexsort((np.arange(len(v)), -v))
    ranks[order] = np.arange(1, len(v) + 1)
    method = values.method if isinstance(values, Values) else "values"
    return SelectionPlan(strategy="top_value", uids=u, group=np.zeros(len(u), dtype=np.int64), n_groups=1,
                         key1=v, key2=-np.arange(len(v), dtype=np.float64), quality=q, pinned=pin, eligible=elig,
                         cluster=None if clusters is None else clusters.labels, y=None, classes=None,
                         params={"strategy": "top_value", "values": method, "seed": seed}, weighted=False,
                         describe=lambda idx: [f"top value {v[i]:.4g} ({method}, rank {ranks[i]} of {len(v)})"
                                               for i in idx])


def kmq_quality(values: Values | NDArray[np.floating] | None, uids: NDArray[np.str_], *,
                X: NDArray[np.floating] | None = None, y: Sequence[int] | None = None,
                judge: NDArray[np.floating] | None = None, seed: int | None = 0) -> tuple[NDArray[np.float64], str]:
    """(q in [0, 1] per row, source): rank-normalised values, else the rank-normalised cross-fitted label
    confidence J(y_given) (computed from X and y when `judge` is not given)."""
    if values is not None:
        return rank_normalise(align_values(values, uids)), (values.method if isinstance(values, Values)
                                                           else "values")
    if y is None or (judge is None and X is None):
        raise TypeError("without values, pass y and X (or a judge) for the label confidence")
    yy = np.asarray(y, dtype=np.int64)
    if judge is None:
        judge = cross_fitted_proba(np.asarray(X), yy, seed=seed)
    return rank_normalise(np.asarray(judge)[np.arange(len(yy)), yy]), "label_confidence"


def plan_kmq(values: Values | NDArray[np.floating] | None, clusters: Clusters, *, temperature: float = TEMPERATURE,
             pinned: Sequence[str] = (), removed: Sequence[str] = (), seed: int | None = None,
             X: NDArray[np.floating] | None = None, y: Sequence[int] | None = None,
             classes: Sequence[str] | None = None, judge: NDArray[np.floating] | None = None) -> SelectionPlan:
    """kMQ with every draw precomputed (see `select_kmq`)."""
    u = np.asarray(clusters.uids, dtype=str)
    q, source = kmq_quality(values, u, X=X, y=y, judge=judge, seed=0 if seed is None else seed)
    pin, elig = _masks(u, pinned, removed)
    rng = np.random.default_rng(seed)
    k1, k2 = _gumbel_keys(q, temperature, rng)
    lab = clusters.labels
    yy = None if y is None else np.asarray(y, dtype=np.int64)
    return SelectionPlan(strategy="kmq", uids=u, group=lab, n_groups=clusters.k, key1=k1, key2=k2, quality=q,
                         pinned=pin, eligible=elig, cluster=lab, y=yy, classes=classes,
                         params={"strategy": "kmq", "temperature": temperature, "seed": seed, "quality": source,
                                 "k": clusters.k}, weighted=True,
                         describe=lambda idx: [f"kmq: cluster {lab[i]}, quality {q[i]:.2f} ({source})" for i in idx])


# ----------------------------------------------------------------------------------------------- strategies
def plan_strategy(strategy: str, *, uids: Sequence[str], y: Sequence[int], classes: Sequence[str] | None = None,
                  clusters: Clusters | None = None, values: Values | None = None, pinned: Sequence[str] = (),
                  removed: Sequence[str] = (), seed: int | None = 0, temperature: float = TEMPERATURE,
                  judge: NDArray[np.floating] | None = None, n_remove: int | None = None
                  ) -> SelectionPlan | Selection:
    """The one dispatcher from a strategy name to the engine (the CLI and the Select page both call it).

    Returns a `SelectionPlan` (then any budget and cluster weights are array work: `.select`, `.preview`), or for
    "drop_negative" its fixed `Selection` (it sets its own size: `n_remove` lowest values, default all below 0).
    "iterative" plans its first round as "kmq"; its rounds run in `select_iterative`.

    Raises:
        DataError: Unknown strategy, or one that needs values or clusters without them.
    """
    key = strategy.replace("-", "_")
    if key not in STRATEGIES:
        names = ", ".join(s.replace("_", "-") for s in STRATEGIES)
        raise DataError(f"unknown strategy {strategy!r}; choose from {names}")
    if key in NEEDS_VALUES and values is None:
        raise DataError(f"strategy {key.replace('_', '-')} needs values: value the data first")
    if key in NEEDS_CLUSTERS and clusters is None:
        raise DataError(f"strategy {key.replace('_', '-')} needs clusters: cluster the data first")
    uids = np.asarray(uids, dtype=str)
    if key == "random":
        return plan_random(uids, clusters=clusters, pinned=pinned, removed=removed, seed=seed)
    if key == "stratified":
        return plan_stratified(uids, y, classes=classes, clusters=clusters, pinned=pinned, removed=removed, seed=seed)
    if key == "top_value":
        return plan_top_value(values, uids=uids, clusters=clusters, pinned=pinned, removed=removed,
                              seed=seed)
    if key == "drop_negative":
        return select_drop_negative(values, n_remove=n_remove, uids=uids, clusters=clusters,
                                    pinned=pinned, removed=removed)
    if key == "clean_kmq":  # n_remove: the suggested removal instead of the significantly harmful rows
        return plan_clean_kmq(values, clusters, n_remove=n_remove, pinned=pinned, removed=removed,
                              temperature=temperature, seed=seed, y=y, classes=classes)
    return plan_kmq(values, clusters, temperature=temperature, pinned=pinned, removed=removed,
                    seed=seed, y=y, classes=classes, judge=judge)


def select_random(uids: Sequence[str] | None = None, *, budget: int | float | str, clusters: Clusters | None = None,
                  pinned: Sequence[str] = (), removed: Sequence[str] = (), seed: int | None = None) -> Selection:
    """A uniform random subset of exactly `budget` rows.

    Args:
        uids: Row ids (or pass `clusters`, whose uids are used and whose ids fill the cluster column).
        budget: Rows to keep (count), or a fraction of the rows not removed.
        pinned: Rows always in; they count toward the budget.
        removed: Rows never in.
        seed: Same seed, same subset.

    Raises:
        DataError: If the budget exceeds the eligible rows or is smaller than the pinned rows.
    """
    return plan_random(uids, clusters=clusters, pinned=pinned, removed=removed, seed=seed).select(budget)


def select_stratified(uids: Sequence[str] | None, y: Sequence[int], *, budget: int | float | str,
                      classes: Sequence[str] | None = None, clusters: Clusters | None = None,
                      pinned: Sequence[str] = (), removed: Sequence[str] = (), seed: int | None = None) -> Selection:
    """A random subset that keeps the label proportions of the eligible rows (largest-remainder rounding).

    Args:
        y: (n,) integer labels aligned with `uids`.
        classes: Class names for the reasons.
        Others: As `select_random`.
    """
    return plan_stratified(uids, y, classes=classes, clusters=clusters, pinned=pinned, removed=removed,
                           seed=seed).select(budget)


def select_top_value(values: Values | NDArray[np.floating], *, budget: int | float | str,
                     uids: Sequence[str] | None = None, clusters: Clusters | None = None, pinned: Sequence[str] = (),
                     removed: Sequence[str] = ()) -> Selection:
    """The `budget` highest-valued rows (TS-DShapley's selection), ties by row order.

    Args:
        values: A valuation run, or an (n,) array aligned with `uids` / `clusters.uids`.
        Others: As `select_random`.

    Raises:
        DataError: As `select_random`, or if the values do not cover the rows.
    """
    return plan_top_value(values, uids=uids, clusters=clusters, pinned=pinned, removed=removed).select(budget)


def _lowest(v: NDArray[np.float64], cand: NDArray[np.bool_], elig: NDArray[np.bool_], n_remove: int
            ) -> NDArray[np.bool_]:
    """Mask of the `n_remove` lowest-valued candidate rows (NaN last, ties by position)."""
    if n_remove < 0 or n_remove >= int(elig.sum()):
        raise DataError(f"removal count {n_remove} must be between 0 and the {int(elig.sum())} eligible rows")
    idx = np.flatnonzero(cand)
    idx = idx[np.lexsort((idx, np.nan_to_num(v[idx], nan=np.inf)))][:n_remove]
    drop = np.zeros(len(v), dtype=bool)
    drop[idx] = True
    return drop


def select_drop_negative(values: Values | NDArray[np.floating], *, n_remove: int | None = None,
                         uids: Sequence[str] | None = None, clusters: Clusters | None = None,
                         pinned: Sequence[str] = (), removed: Sequence[str] = ()) -> Selection:
    """All eligible rows minus those valued below 0, or minus the `n_remove` lowest-valued.

    Args:
        values: A valuation run, or an (n,) array aligned with `uids` / `clusters.uids`.
        n_remove: Rows to drop (a valuation run's suggested removal count); None drops every value < 0.
        Others: As `select_random`; pinned rows are never dropped.

    Raises:
        DataError: If `n_remove` is negative or would leave nothing.
    """
    u = _uids_of(uids, clusters, values if isinstance(values, Values) else None)
    v = align_values(values, u)
    pin, elig = _masks(u, pinned, removed)
    cand = elig & ~pin
    if n_remove is None:
        drop = cand & (v < 0)
        rule = "value >= 0"
    else:
        n_remove = int(n_remove)
        drop = _lowest(v, cand, elig, n_remove)
        rule = f"not among the {n_remove} lowest values"
    keep = elig & ~drop
    if not keep.any():
        raise DataError("every eligible row has a negative value; nothing would remain")
    b = int(keep.sum())
    sel = plan_top_value(v, uids=u, clusters=clusters, pinned=list(u[pin]), removed=list(u[~keep])).select(b)
    pos = _index_of(u, sel.uids)
    why = np.asarray([f"kept: value {v[i]:.4g} ({rule})" for i in pos], dtype=object)
    why[pin[pos]] = "pinned: a keep decision"
    method = values.method if isinstance(values, Values) else "values"
    params = {"strategy": "drop_negative", "n_remove": n_remove, "rule": rule, "values": method, "budget": b,
              "n_dropped": int(drop.sum()), "n_pinned": int(pin.sum()), "n_removed": int((~elig).sum())}
    return replace(sel, strategy="drop_negative", why=why, params=params)


def _index_of(uids: NDArray[np.str_], wanted: NDArray[np.str_]) -> NDArray[np.int64]:
    """Positions in `uids` of each wanted uid, in the order given (all must exist)."""
    import pandas as pd

    idx = pd.Index(uids).get_indexer(pd.Index(np.asarray(wanted, dtype=str)))
    assert (idx >= 0).all()
    return idx.astype(np.int64)


def select_kmq(values: Values | NDArray[np.floating] | None, clusters: Clusters, *, budget: int | float | str,
               weights: Mapping[int, float] | None = None, pinned: Sequence[str] = (), removed: Sequence[str] = (),
               temperature: float = TEMPERATURE, seed: int | None = None, X: NDArray[np.floating] | None = None,
               y: Sequence[int] | None = None, classes: Sequence[str] | None = None,
               judge: NDArray[np.floating] | None = None) -> Selection:
    """Spread a budget across clusters, then pick by quality inside each cluster (kMQ).

    Args:
        values: A valuation run (or an (n,) array aligned with `clusters.uids`); its ranks, scaled to [0, 1], are
            the quality. None uses the cross-fitted label confidence (needs `X` and `y`, or `judge`).
        clusters: From `fit_clusters`.
        budget: Rows to keep (count), or a fraction of the rows not removed.
        weights: Cluster id -> weight multiplying the cluster's share; left out = 1.0; 0 empties the cluster
            (its pinned rows stay).
        pinned: Rows always in; they count toward their cluster's share and the budget.
        removed: Rows never in.
        temperature: T in p ∝ exp(q / T); 0 is top-k per cluster, inf uniform.
        seed: Same seed, same subset.
        X, y, classes, judge: For the label confidence, and per-class counts in previews.

    Returns:
        Exactly `budget` rows, each with its cluster, quality and reason.

    Raises:
        DataError: If the budget exceeds the eligible rows (or those in clusters of weight > 0), is below the
            pinned count, a weight names an unknown cluster, or the values miss rows.
    """
    return plan_kmq(values, clusters, temperature=temperature, pinned=pinned, removed=removed, seed=seed, X=X,
                    y=y, classes=classes, judge=judge).select(budget, weights)


def plan_clean_kmq(values: Values, clusters: Clusters, *, n_remove: int | None = None, pinned: Sequence[str] = (),
                   removed: Sequence[str] = (), temperature: float = TEMPERATURE, seed: int | None = None,
                   y: Sequence[int] | None = None, classes: Sequence[str] | None = None) -> SelectionPlan:
    """Clean, then diversify, with every draw precomputed (see `select_clean_kmq`): a kMQ plan on the rows left after
    cleaning whose cluster shares are those of the rows *before* cleaning."""
    import pandas as pd

    from core.valuation.significance import classify

    u = np.asarray(clusters.uids, dtype=str)
    v = align_values(values, u)
    pin, elig = _masks(u, pinned, removed)
    cand = elig & ~pin
    if n_remove is None:
        at = pd.Index(np.asarray(values.uids, dtype=str)).get_indexer(pd.Index(u))  # all found: align_values checked
        sig = classify(v, np.asarray(values.stderr, dtype=np.float64)[at], np.asarray(values.counts)[at])
        drop = cand & (sig == "harmful")
        rule = "significantly harmful (95 % interval below 0)"
    else:
        n_remove = int(n_remove)
        drop = _lowest(v, cand, elig, n_remove)
        rule = f"the {n_remove} lowest values (suggested removal)"
    plan = plan_kmq(v, clusters, temperature=temperature, pinned=pinned, removed=list(u[~elig | drop]), seed=seed,
                    y=y, classes=classes)
    plan.size = np.bincount(clusters.labels[elig], minlength=clusters.k).astype(np.float64)  # shares before cleaning
    plan.strategy = "clean_kmq"
    lab = clusters.labels
    plan.params = dict(plan.params, strategy="clean_kmq", rule=rule, n_dropped=int(drop.sum()), n_remove=n_remove,
                       values=values.method if isinstance(values, Values) else "values")
    plan._describe = lambda idx: [f"clean-kmq: cluster {lab[i]}, value {v[i]:.3g} (kept: not {rule})" for i in idx]
    return plan


def clean_removal_count(values: Values | None, suggested: int | None) -> int | None:
    """What clean-then-diversify drops by default: None (the significantly harmful rows) when the values have
    standard errors, else the run's suggested removal count (the only signal left)."""
    if values is not None and (np.asarray(values.counts) >= 2).any() and np.isfinite(values.stderr).any():
        return None
    return suggested


def select_clean_kmq(values: Values, clusters: Clusters, *, budget: int | float | str,
                     n_remove: int | None = None, weights: Mapping[int, float] | None = None,
                     pinned: Sequence[str] = (), removed: Sequence[str] = (), temperature: float = TEMPERATURE,
                     seed: int | None = None, y: Sequence[int] | None = None,
                     classes: Sequence[str] | None = None) -> Selection:
    """Clean, then diversify: drop the harmful rows, then spread the budget over clusters with kMQ's shares.

    Cleaning drops the rows whose value is *significantly* below 0 (`core.valuation.significance`: the upper end
    of the 95 % interval below 0), or, with `n_remove`, the `n_remove` lowest-valued rows (a valuation run's
    suggested removal, TS-DShapley's removal index). The budget is then drawn with kMQ: each cluster's share is
    proportional to its size *before* cleaning (diversity first: a cluster is not starved because it held harmful
    rows; a cluster left with too few rows passes its shortfall on), rows inside a cluster by value.

    Args:
        values: A valuation run (its standard errors and counts decide significance).
        clusters: From `fit_clusters`, aligned with the values' rows.
        budget: Rows to keep (count), or a fraction of the rows left after cleaning and `removed`.
        n_remove: Drop the n lowest-valued rows instead of the significantly harmful ones.
        weights, pinned, removed, temperature, seed, y, classes: As `select_kmq`; pinned rows are never dropped.

    Raises:
        DataError: As `select_kmq`; or if the budget exceeds the rows left after cleaning.
    """
    plan = plan_clean_kmq(values, clusters, n_remove=n_remove, pinned=pinned, removed=removed,
                          temperature=temperature, seed=seed, y=y, classes=classes)
    try:
        return plan.select(budget, weights)
    except DataError as e:
        raise DataError(f"clean-then-diversify: {e} ({plan.params['n_dropped']} rows dropped as "
                        f"{plan.params['rule']})") from None


def _lr_train_fn(X: NDArray[np.floating], y: NDArray[np.int64], n_classes: int, seed: int | None) -> TrainFn:
    def train(train_idx: NDArray[np.int64], score_idx: NDArray[np.int64]) -> NDArray[np.float64]:
        return fit_proba(X[train_idx], y[train_idx], X[score_idx], n_classes=n_classes, seed=seed)
    return train


def select_iterative(X: NDArray[np.floating], y: Sequence[int], clusters: Clusters, *, budget: int | float | str,
                     values: Values | NDArray[np.floating] | None = None, judge: NDArray[np.floating] | None = None,
                     rounds: int = ROUNDS, temperature: float = TEMPERATURE,
                     reweight_temperature: float = REWEIGHT_TEMPERATURE,
                     weights: Mapping[int, float] | None = None, pinned: Sequence[str] = (),
                     removed: Sequence[str] = (), seed: int | None = None, n_score: int = N_SCORE,
                     shrink: float = SHRINK, train_fn: TrainFn | None = None, classes: Sequence[str] | None = None,
                     on_progress: Callable[..., None] | None = None) -> Selection:
    """Diversify and Conquer's iterative refinement: kMQ in rounds, re-weighting clusters by a judge after each.

    Args:
        X: (n, d) embeddings aligned with `clusters.uids`.
        y: (n,) integer labels as given.
        clusters: From `fit_clusters`.
        budget: Rows to keep (count), or a fraction of the rows not removed.
        values: Quality inside clusters (as `select_kmq`); None uses the judge's confidence in the given label.
        judge: (n, n_classes) cross-fitted class probabilities J; None computes them (logistic regression, 5 folds).
        rounds: N; each round draws about (budget - pinned) / N rows.
        temperature: T of the in-cluster draw.
        reweight_temperature: T of the re-weighting w * exp(z / T), z the cluster scores' z-score (default 1;
            see REWEIGHT_TEMPERATURE for why not the in-cluster T).
        weights: User cluster weights, multiplying the learned ones (0 empties a cluster).
        pinned, removed, seed: As `select_kmq`.
        n_score: Not-yet-selected rows scored per cluster and round.
        shrink: Prior strength, in rows, pulling a cluster's mean score toward the global mean.
        train_fn: train_fn(train_idx, score_idx) -> (len(score_idx), n_classes) probabilities; default a logistic
            regression on X (the source classifier). Pass the fine-tuned target model here for the slow path.
        classes: Class names (for the reasons).
        on_progress: Called as on_progress(fraction, message, None) after each round.

    Returns:
        Exactly `budget` rows, each with its cluster, quality and round; `history` holds per round the cluster
        weights (mean 1), the scores and the rows taken per cluster.

    Raises:
        DataError: As `select_kmq`.
    """
    t0 = time.perf_counter()
    report = on_progress or (lambda *a: None)
    yy = np.asarray(y, dtype=np.int64)
    Xa = np.asarray(X)
    n, k = len(clusters), clusters.k
    if Xa.shape[0] != n or yy.shape != (n,):
        raise TypeError(f"X {Xa.shape}, y {yy.shape} and clusters ({n}) must be aligned")
    if rounds < 1:
        raise DataError(f"rounds must be at least 1; got {rounds}")
    rseed = 0 if seed is None else seed
    if judge is None:
        report(0.0, "judge: cross-fitted label confidence", None)
        judge = cross_fitted_proba(Xa, yy, seed=rseed)
    J = np.asarray(judge, dtype=np.float64)
    n_classes = J.shape[1]
    plan = plan_kmq(values, clusters, temperature=temperature, pinned=pinned, removed=removed, seed=seed, y=yy,
                    classes=classes, judge=J)
    user = _weights_vector(weights, k)
    b, _ = plan.allocation(budget, weights)  # validates the budget against pins and weights
    T_w = float(reweight_temperature)
    train = train_fn or _lr_train_fn(Xa, yy, n_classes, rseed)
    rng = np.random.default_rng(np.random.SeedSequence([rseed, 7]))

    lab, rank, pin = clusters.labels, plan.rank, plan.pinned
    free = b - int(pin.sum())
    sizes = [free // rounds + (1 if r < free % rounds else 0) for r in range(rounds)]
    w = np.ones(k)
    taken = np.zeros(k, dtype=np.int64)  # candidates taken per cluster so far
    chosen_round = np.full(n, -1, dtype=np.int64)
    chosen_round[pin] = 0
    history: list[dict[str, Any]] = []
    active = user > 0
    for r in range(rounds):
        scores_rec: dict[str, Any] = {}
        if r > 0:
            sel_idx = np.flatnonzero(chosen_round >= 0)
            remaining = plan.eligible & ~pin & (chosen_round < 0)
            rem_idx = np.flatnonzero(remaining)
            u = rng.random(len(rem_idx))
            order = rem_idx[np.lexsort((u, lab[rem_idx]))]
            g = lab[order]
            starts = np.searchsorted(g, np.arange(k))
            pos_in = np.arange(len(order)) - starts[g]
            score_idx = order[(pos_in < n_score) & active[g]]
            s_k = np.full(k, np.nan)
            n_k = np.zeros(k, dtype=np.int64)
            if len(score_idx) and len(sel_idx):
                P = np.asarray(train(sel_idx, score_idx), dtype=np.float64)
                Js = J[score_idx]
                S = Js[np.arange(len(score_idx)), yy[score_idx]] - (P * Js).sum(axis=1)
                gl = lab[score_idx]
                n_k = np.bincount(gl, minlength=k)
                sums = np.bincount(gl, weights=S, minlength=k)
                g_mean = float(S.mean())
                shrunk = (sums + shrink * g_mean) / (n_k + shrink)
                live = active & (n_k > 0)
                s_k = np.where(live, shrunk, np.nan)
                z = np.zeros(k)
                if live.sum() > 1:
                    sd = float(np.std(shrunk[live]))
                    if sd > 1e-12:
                        z[live] = (shrunk[live] - shrunk[live].mean()) / sd
                w = w * np.exp(np.clip(z / T_w, -50, 50)) if T_w > 0 else w
                if active.any():
                    w = w / w[active].mean()
                    w[active] = np.maximum(w[active], 1e-12)  # never 0: the budget must stay feasible
                scores_rec = {"scores": [None if np.isnan(s) else round(float(s), 6) for s in s_k],
                              "z": [round(float(v), 6) for v in z], "n_scored": n_k.tolist(),
                              "global_score": round(g_mean, 6)}
        pi = plan.size * user * w
        lo = pin_k = (np.bincount(lab[pin], minlength=k) if r == 0 else np.zeros(k, dtype=np.int64))
        total = sizes[r] + (int(pin_k.sum()) if r == 0 else 0)
        avail = plan.cand - taken
        alloc = apportion(pi, lo, lo + avail, total) - lo
        new = (~pin) & (rank >= taken[lab]) & (rank < (taken + alloc)[lab])
        chosen_round[new] = r
        taken += alloc
        history.append({"round": r, "weights": [float(v) for v in (w * user)], "taken": alloc.tolist(),
                        **scores_rec})
        report((r + 1) / rounds, f"round {r + 1}/{rounds}: {int(alloc.sum())} rows", None)

    idx = np.flatnonzero(chosen_round >= 0)
    idx = idx[np.lexsort((rank[idx], lab[idx], chosen_round[idx], ~pin[idx]))]
    assert len(idx) == b, (len(idx), b)
    wr = {r: h["weights"] for r, h in enumerate(history)}
    why = np.asarray([f"iterative round {chosen_round[i]}: cluster {lab[i]} (weight {wr[chosen_round[i]][lab[i]]:.2f}),"
                      f" quality {plan.quality[i]:.2f} ({plan.params['quality']})" for i in idx], dtype=object)
    why[pin[idx]] = "pinned: a keep decision"
    params = {"strategy": "iterative", "budget": int(b), "budget_requested": _to_json(budget), "rounds": rounds,
              "temperature": temperature, "reweight_temperature": T_w, "seed": seed, "n_score": n_score,
              "shrink": shrink, "quality": plan.params["quality"], "k": k,
              "train_fn": "logistic_regression" if train_fn is None else getattr(train_fn, "__name__", "custom"),
              "weights": {str(c): float(v) for c, v in (weights or {}).items()}, "n_pinned": int(pin.sum()),
              "n_removed": int((~plan.eligible).sum())}
    return Selection(uids=plan.uids[idx], clusters=lab[idx], quality=plan.quality[idx], rounds=chosen_round[idx],
                     why=why, strategy="iterative", params=_to_json(params), history=history,
                     seconds=time.perf_counter() - t0)
