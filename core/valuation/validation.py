"""Value a whole dataset: validation data (the user's, or a held-out split valued by swapping roles), checks, runs.

`value_dataset` is the one entry point that the CLI and the app call. With a validation set from the user, every
row of the data is valued against it, as given. Without one, a stratified 10 % (at most 2,000 rows) is held out: the
other rows are valued against it, then the held-out rows are valued by swapping roles, so every row gets a value.
Methods that need no validation set (label quality, Data-OOB, random) value all rows at once.

Two rules keep the values of the held-out rows meaningful without a validation file:
- One scale (`swap_plan`). KNN-Shapley, TMC-Shapley and leave-one-out share one utility among all training rows,
  so a row's value shrinks like 1/n: valued in a training set of only the held-out size, the held-out rows took the
  top ranks. They are now valued inside a training set as large as the first phase's (the held-out rows plus filler
  rows of the first phase, whose values are dropped), scored on as many other first-phase rows as were held out.
  So every row is valued in a training set of one size against a validation set of one size: same scale, same
  meaning, no rescaling. TS-DShapley values inside subsets of a fixed size m, so it needs no filler. K-fold role
  swapping would give the same guarantee at K times the cost; a calibration (e.g. rescaling by n) would hold only
  in expectation and not for leave-one-out's ridge downdates.
- A cleaner validation split (`ValidCleaner`, `clean_valid`). The held-out rows are as noisy as the data, and a
  noisy validation set tells the methods to value the noise. Rows whose given label a 5-fold cross-fitted logistic
  regression gives probability below 0.2 are left out of the validation rows (of both phases); they are still
  valued. `params["valid_cleaning"]` records the rule and the counts. A validation file is never cleaned.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from core import sampling
from core.errors import DataError
from core.valuation.base import ProgressFn, Split, Values
from core.valuation.registry import REGISTRY, method_key

CLEAN_THRESHOLD = 0.2
"""Default of `clean_valid`: held-out validation rows whose given label gets a cross-fitted probability below this
are left out of the validation set (they are still valued)."""


def default_valid_fraction(key: str) -> float:
    """Share of the rows held out as validation without --valid: 0.5 for TS-DShapley, 0.1 for the others.

    TS-DShapley values inside subsets of a fixed size m, so the split does not change its scale, and its utility
    (accuracy of a small classifier on the validation rows) is noisy on a few hundred rows, so half is held out
    (what it measured: benchmarks/RESULTS.md, "Measurements behind defaults"). The size-dependent methods keep 10 %
    so that their training set stays close to the data.
    """
    return 0.5 if key == "ts_dshapley" else 0.1


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


def stratified_sample(y: NDArray[np.int64], size: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Indices of a stratified random sample of `size` rows (at least one row of each class with 2+ rows; each
    class keeps a row out of a sample smaller than the data): `core.sampling.stratified_sample`."""
    return sampling.stratified_sample(y, size, rng, leave_one=size < len(y))


def holdout_split(y: NDArray[np.int64], *, fraction: float = 0.1, max_rows: int = 2000, seed: int = 0,
                  classes: Sequence[str] | None = None) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(train indices, validation indices): a stratified `fraction` (at most `max_rows`) held out."""
    codes, counts = np.unique(y, return_counts=True)
    if len(codes) < 2:
        raise DataError("valuation needs at least two classes")
    if counts.min() < 2:
        c = codes[counts.argmin()]
        raise DataError(f"class {_name(c, classes)} has only 1 row; every class needs at least 2 rows to hold out "
                        f"validation rows (or pass --valid FILE)")
    size = int(min(max_rows, max(len(codes), round(fraction * len(y)))))
    va = stratified_sample(y, size, np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,))))
    tr = np.setdiff1d(np.arange(len(y)), va)
    return tr, va


def _name(code: int, classes: Sequence[str] | None) -> str:
    return repr(classes[int(code)]) if classes is not None and int(code) < len(classes) else f"code {int(code)}"


def check_inputs(X: NDArray[np.floating], y: NDArray[np.int64], uids: NDArray[np.str_], *, what: str = "data",
                 classes: Sequence[str] | None = None) -> None:
    """DataError on NaN embeddings or shapes that do not line up."""
    if X.ndim != 2 or len(X) != len(y) or len(y) != len(uids):
        raise DataError(f"{what}: {len(uids)} uids, {len(y)} labels and embeddings of shape {X.shape} do not match; "
                        f"re-run the embedding step")
    bad = ~np.isfinite(X).all(1)
    if bad.any():
        raise DataError(f"{what}: embeddings contain NaN or infinite values in {int(bad.sum())} row(s) (first uid: "
                        f"{uids[np.flatnonzero(bad)[0]]}); re-run the embedding step")


def check_same_classes(y_train: NDArray[np.int64], y_valid: NDArray[np.int64],
                       classes: Sequence[str] | None = None) -> None:
    """DataError when a class is missing from the validation rows, or the validation rows have an extra class."""
    tr, va = set(np.unique(y_train).tolist()), set(np.unique(y_valid).tolist())
    if tr - va:
        names = ", ".join(_name(c, classes) for c in sorted(tr - va))
        raise DataError(f"class {names} is missing from the validation set; every training class needs validation "
                        f"rows (add them, or let Winnow hold out a split by leaving out --valid)")
    if va - tr:
        names = ", ".join(_name(c, classes) for c in sorted(va - tr))
        raise DataError(f"the validation set has label {names} that the training data lacks; drop those rows")


def _seed(seed: int, *key: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, np.uint64)[0] % (2**63))


def _subset_values(v: Values, idx_uids: NDArray[np.str_]) -> Values:
    pos = {u: i for i, u in enumerate(v.uids)}
    idx = np.array([pos[u] for u in idx_uids], dtype=np.int64)
    return replace(v, uids=v.uids[idx], values=v.values[idx], stderr=v.stderr[idx], counts=v.counts[idx],
                   extra={k: np.asarray(a)[idx] for k, a in v.extra.items()})


def _concat(parts: Sequence[tuple[NDArray[np.int64], Values | None]], n: int, uids: NDArray[np.str_], *,
            method: str, params: dict[str, Any], seconds: float) -> Values:
    """Place phase results at their row positions (rows of a missing phase: value 0, count 0, NaN extras)."""
    values, stderr, counts = np.zeros(n), np.full(n, np.nan), np.zeros(n, np.int64)
    keys = sorted({k for _, v in parts if v is not None for k in v.extra})
    extra: dict[str, NDArray[Any]] = {}
    for k in keys:
        sample = next(np.asarray(v.extra[k]) for _, v in parts if v is not None and k in v.extra)
        extra[k] = np.full(n, np.nan) if sample.dtype.kind == "f" else np.empty(n, dtype=sample.dtype)
    for rows, v in parts:
        if v is None:
            continue
        values[rows], stderr[rows], counts[rows] = v.values, v.stderr, v.counts
        for k in keys:
            if k in v.extra:
                extra[k][rows] = v.extra[k]
    return Values(uids=np.asarray(uids), values=values, stderr=stderr, counts=counts, method=method, params=params,
                  seconds=seconds, extra=extra)


def value_dataset(X: NDArray[np.floating], y: NDArray[np.int64], uids: Sequence[str] | NDArray[np.str_], *,
                  method: str = "ts_dshapley", valid: Split | None = None, seed: int = 0,
                  classes: Sequence[str] | None = None, valid_fraction: float | None = None, max_valid: int = 2000,
                  suggest_removal: bool = False, continue_from: Values | None = None,
                  clean_valid: float | None = CLEAN_THRESHOLD, on_progress: ProgressFn | None = None,
                  **options: Any) -> Values:
    """Value every row of a dataset with one method (the function the CLI and the app call).

    Args:
        X: (n, d) embeddings of the rows; y: (n,) integer labels (index into `classes`); uids: (n,) row ids.
        method: Registry key or CLI name ("ts-dshapley", "knn_shapley", ..., "consensus").
        valid: The user's validation rows (embedded with the same encoder). None: hold out `valid_fraction`
            (None: `default_valid_fraction` of the method; at most `max_valid` rows), value the rest against it,
            then value the held-out rows by swapping roles.
            A larger validation set is reduced to a stratified sample of `max_valid` rows.
        seed: Seeds the split and the method (phases get seeds spawned from it).
        classes: Class names, for messages.
        suggest_removal: Also run the removal-index search; its result (recommended count, fraction, curve) is
            in `params["removal"]`. Its scoring split never serves as validation for the values: a stratified
            third of the user's validation rows, or else a stratified 5 % (at most 1,000 rows) of the data that is
            valued with the held-out rows.
        continue_from: Partial Values that an earlier call passed to `on_progress` (iterative methods).
        clean_valid: Without `valid`: leave out of the held-out validation rows (and of the swapped phase's
            validation rows) those whose given label gets an out-of-fold probability below this, from a 5-fold
            cross-fitted logistic regression on all rows; they are still valued. None or 0: keep every row.
            `params["valid_cleaning"]` records the rule and how many rows were left out. Unused with `valid`.
        on_progress: Progress callback; for iterative methods it receives partial Values over all rows.
        **options: The method's keyword options (e.g. n_passes=20); for "consensus": members=[...],
            member_options={...}.

    Returns:
        Values over all rows in the order of `uids`; `params` records the method options, the seed and how the
        validation data was made.

    Raises:
        DataError: NaN embeddings, a class missing from the validation set (or extra validation labels), a
            class with too few rows, an unknown method.
    """
    t0 = time.perf_counter()
    key = method_key(method)
    uids = np.asarray(uids).astype(str)
    X = np.asarray(X)
    y = np.asarray(y, dtype=np.int64)
    n = len(uids)
    check_inputs(X, y, uids, classes=classes)
    if len(np.unique(y)) < 2:
        raise DataError("valuation needs at least two classes in the data")
    if valid is not None:
        check_inputs(valid.X, valid.y, valid.uids, what="validation set", classes=classes)
        check_same_classes(y, valid.y, classes)
    report = on_progress or (lambda f, m, p=None: None)
    full = Split(uids, X, y)
    score_on: Split | None = None
    s2 = np.zeros(0, dtype=np.int64)  # data rows kept for scoring the removal search (never validation)
    if suggest_removal:
        if valid is not None:
            keep = stratified_sample(valid.y, len(valid) - len(valid) // 3, np.random.default_rng(_seed(seed, 5)))
            score_on = valid.take(np.setdiff1d(np.arange(len(valid)), keep))
            valid = valid.take(keep)
        else:
            s2 = stratified_sample(y, min(1000, max(len(np.unique(y)), round(0.05 * n))),
                                   np.random.default_rng(_seed(seed, 6)))
            score_on = full.take(s2)
    held = s2 if REGISTRY[key].needs_valid else np.zeros(0, dtype=np.int64)
    if valid is not None and len(valid) > max_valid:
        valid = valid.take(stratified_sample(valid.y, max_valid, np.random.default_rng(_seed(seed, 3))))

    clean = None
    if valid is None and clean_valid and (REGISTRY[key].needs_valid):
        holdout_split(y, classes=classes)  # the data can hold out a split at all (else its clear error)
        clean = ValidCleaner.fit(X, y, uids, threshold=clean_valid, seed=seed)
    if key == "consensus":
        res = _consensus(X, y, uids, valid=valid, seed=seed, classes=classes, valid_fraction=valid_fraction,
                         max_valid=max_valid, on_progress=report, t0=t0, held=held, clean=clean, **options)
    else:
        res = _value_rows(key, full, valid=valid, held=held, seed=seed, classes=classes,
                          valid_fraction=valid_fraction, max_valid=max_valid, continue_from=continue_from,
                          report=report, options=options, clean=clean)
    if suggest_removal and score_on is not None:
        from core.valuation.removal import suggest_removal as _suggest

        cand = np.setdiff1d(np.arange(n), s2)  # fitted on what remains of these, scored on `score_on`
        ref = valid if valid is not None else score_on
        sug = _suggest(full.take(cand), res, valid=ref, score_on=score_on, seed=seed,
                       n_components=options.get("n_components", 32) or 32)
        frac = sug.fraction
        n_total = int(round(frac * n))
        removal = {**sug.to_dict(), "n_candidates": len(cand), "n_scoring": len(score_on),
                   "n_remove_total": n_total}
        res = replace(res, params={**res.params, "removal": removal})
    return replace(res, seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class ValidCleaner:
    """Drops validation rows whose label a cross-fitted classifier confidently contradicts.

    `proba` holds out-of-fold class probabilities of every data row (a row's own label never trains its
    prediction); a held-out row is kept as validation when the probability of its given label is at least
    `threshold`. Every class keeps at least two rows (its most confident ones), so the validation set never
    loses a class.
    """

    y: NDArray[np.int64]
    proba: NDArray[np.float64]
    threshold: float
    n_folds: int

    @classmethod
    def fit(cls, X: NDArray[np.floating], y: NDArray[np.int64], uids: NDArray[np.str_], *, threshold: float,
            seed: int, n_folds: int = 5) -> ValidCleaner:
        from core.valuation.label_quality import out_of_fold_proba

        proba = out_of_fold_proba(Split(uids, X, y), n_folds=n_folds, seed=_seed(seed, 10) % (2**32))
        return cls(y, proba, float(threshold), n_folds)

    def confidence(self, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        return self.proba[rows, self.y[rows]]

    def filter(self, rows: NDArray[np.int64]) -> tuple[NDArray[np.int64], dict[str, int]]:
        rows = np.asarray(rows, dtype=np.int64)
        p = self.confidence(rows)
        keep = p >= self.threshold
        for c in np.unique(self.y[rows]):
            mine = np.flatnonzero(self.y[rows] == c)
            floor = min(2, len(mine))
            if keep[mine].sum() < floor:
                keep[mine[np.argsort(-p[mine], kind="stable")[:floor]]] = True
        return np.sort(rows[keep]), {"rows": int(len(rows)), "dropped": int((~keep).sum())}

    def describe(self) -> dict[str, Any]:
        return {"rule": f"validation rows whose given label a {self.n_folds}-fold cross-fitted logistic regression "
                        f"gives probability < {self.threshold:g} are left out of the validation set (still valued)",
                "threshold": self.threshold}


def _value_rows(key: str, full: Split, *, valid: Split | None, held: NDArray[np.int64], seed: int,
                classes: Sequence[str] | None, valid_fraction: float | None, max_valid: int,
                continue_from: Values | None, report: ProgressFn, options: dict[str, Any],
                clean: ValidCleaner | None = None) -> Values:
    """Value all rows of `full` with one method; `held` rows join the swapped phase (they never validate)."""
    t0 = time.perf_counter()
    fn: Callable[..., Values] = REGISTRY[key].function
    n = len(full)
    uids = full.uids
    if not REGISTRY[key].needs_valid:
        res = fn(full, valid=valid, seed=seed, on_progress=report, **options)
        return replace(res, params={**res.params, "seed": seed, "validation": "not used"})

    if valid is not None:
        kw = dict(options)
        if REGISTRY[key].iterative:
            kw["continue_from"] = continue_from
        res = fn(full, valid=valid, seed=seed, on_progress=report, **kw)
        return replace(res, params={**res.params, "seed": seed, "validation": "file", "n_valid": len(valid)})

    # held-out split, then swapped roles
    valid_fraction = default_valid_fraction(key) if valid_fraction is None else valid_fraction
    rest = np.setdiff1d(np.arange(n), held)
    tr_r, va_r = holdout_split(full.y[rest], fraction=valid_fraction, max_rows=max_valid, seed=seed,
                               classes=classes)
    tr, va = rest[tr_r], np.sort(np.concatenate([rest[va_r], held]))
    plan = swap_plan(key, full.y, tr, rest[va_r], va, seed=seed, max_valid=max_valid,
                     subset_size=options.get("subset_size", 100))
    v_rows, v2_rows = rest[va_r], plan.valid
    cleaning = None
    if clean is not None:
        v_rows, rep1 = clean.filter(v_rows)
        v2_rows, rep2 = clean.filter(v2_rows)
        cleaning = {**clean.describe(), "held_out": rep1, "swap_validation": rep2}
    T, V = full.take(tr), full.take(v_rows)
    phases = [(tr, tr, T, V, _seed(seed, 1)), (va, plan.train, full.take(plan.train), full.take(v2_rows),
                                               _seed(seed, 2))]
    latest: list[Values | None] = [None, None]
    results: list[Values | None] = [None, None]
    weights = [len(tr) / n, len(va) / n]
    base_params: dict[str, Any] = {"seed": seed, "validation": "holdout+swap", "n_valid": len(va_r),
                                   "valid_fraction": valid_fraction, "max_valid": max_valid,
                                   "swap": plan.describe()}
    if cleaning is not None:
        base_params["valid_cleaning"] = cleaning

    def partial_all() -> Values:
        parts = [(phases[i][0], None if latest[i] is None else _subset_values(latest[i], full.uids[phases[i][0]]))
                 for i in range(2)]
        phase_params = [None if v is None else v.params for v in latest]
        return _concat(parts, n, uids, method=key, params={**base_params, "phase_params": phase_params},
                       seconds=time.perf_counter() - t0)

    for i, (rows, train_rows, tr_split, va_split, s) in enumerate(phases):
        kw = dict(options)
        if i == 1 and key == "ts_dshapley":
            kw["subset_size"] = _swap_subset_size(tr_split.y, options.get("subset_size", 100))
        start = sum(weights[:i])

        def prog(f: float, msg: str, partial: Values | None = None, i: int = i, start: float = start) -> None:
            msg = f"held-out rows: {msg}" if i == 1 else msg
            if partial is not None:
                latest[i] = partial
                report(start + weights[i] * f, msg, partial_all())
            else:
                report(start + weights[i] * f, msg, None)

        # a phase resumes only when its checkpoint holds every row it values (not the filler of the swapped phase)
        if REGISTRY[key].iterative and continue_from is not None and len(train_rows) == len(rows):
            pp = (continue_from.params.get("phase_params") or [None, None])[i]
            if pp is not None:
                kw["continue_from"] = replace(_subset_values(continue_from, tr_split.uids), params=pp)
        results[i] = fn(tr_split, valid=va_split, seed=s, on_progress=prog, **kw)
        if latest[i] is None or key != "ts_dshapley":
            latest[i] = results[i]
    kept = [_subset_values(results[i], full.uids[phases[i][0]]) for i in range(2)]  # type: ignore[arg-type]
    res = _concat([(tr, kept[0]), (va, kept[1])], n, uids, method=key, params={}, seconds=0.0)
    params = {**results[0].params, **base_params, "swap_params": results[1].params}  # type: ignore[union-attr]
    params["n_valid"] = len(va_r)
    return replace(res, params=params, extra={k: v for k, v in res.extra.items() if not k.startswith("pass_")})


SIZE_DEPENDENT = frozenset({"knn_shapley", "tmc_shapley", "loo"})
"""Methods whose values shrink as the training set grows (they share one utility among all training rows): the
held-out rows must be valued inside a training set as large as the one the other rows were valued in."""


@dataclass(frozen=True)
class SwapPlan:
    """How the held-out rows are valued (the swapped-roles phase), as row indices into the data."""

    train: NDArray[np.int64]  # rows the method values in the swapped phase (the held-out rows, plus filler)
    valid: NDArray[np.int64]  # rows it is scored on (drawn from the first phase's training rows)
    n_filler: int

    def describe(self) -> dict[str, Any]:
        return {"n_train": int(len(self.train)), "n_filler": int(self.n_filler), "n_valid": int(len(self.valid))}


def swap_plan(key: str, y: NDArray[np.int64], tr: NDArray[np.int64], va: NDArray[np.int64],
              swap_rows: NDArray[np.int64], *, seed: int, max_valid: int, subset_size: int = 100) -> SwapPlan:
    """Rows of the swapped-roles phase, so that held-out rows get values on the same scale as the others.

    Every row is valued in a training set of the same size against a validation set of the same size:
    - size-dependent methods (KNN-Shapley, TMC-Shapley, leave-one-out: one utility shared among all training
      rows, so a row's value shrinks like 1/n): the held-out rows join a filler of first-phase training rows up to
      the first phase's training size, scored on |va| other first-phase rows (the filler's values are dropped);
    - TS-DShapley values inside subsets of a fixed size m, so the held-out rows alone form the training rows (in
      subsets of m), scored on a stratified sample of at most `max_valid` first-phase rows.
    """
    rng = np.random.default_rng(_seed(seed, 4))
    if key in SIZE_DEPENDENT:
        v2 = tr[stratified_sample(y[tr], min(len(va), len(tr) - 1), rng)]
        pool = np.setdiff1d(tr, v2)
        need = max(0, len(tr) - len(swap_rows))
        fill = pool[stratified_sample(y[pool], min(need, len(pool)), np.random.default_rng(_seed(seed, 9)))] \
            if need > 0 else np.zeros(0, np.int64)
        return SwapPlan(np.sort(np.concatenate([swap_rows, fill])), np.sort(v2), len(fill))
    v2 = tr[stratified_sample(y[tr], min(len(tr), max_valid), rng)]
    return SwapPlan(np.asarray(swap_rows), np.sort(v2), 0)


def _swap_subset_size(y: NDArray[np.int64], subset_size: int) -> int:
    """Subset size for valuing the (small) held-out rows: the asked size unless a class is too rare for it."""
    counts = np.bincount(y)
    counts = counts[counts > 0]
    n_subsets = max(1, int(round(len(y) / subset_size)))
    if counts.min() >= n_subsets:
        return subset_size
    return int(np.ceil(len(y) / counts.min()))


SELF_CHECK_FLIP = 0.1
"""Share of labels the calibrated consensus flips in its self-check copy to learn its members' weights."""


def _consensus(X, y, uids, *, valid, seed, classes, valid_fraction, max_valid, on_progress, t0, held, clean=None,
               members: Sequence[str] | None = None, member_options: dict[str, dict[str, Any]] | None = None,
               weights: str = "self_check", check_flip: float = SELF_CHECK_FLIP, check_folds: int = 5,
               agreement: NDArray[np.floating] | None = None, agreement_name: str | None = None) -> Values:
    """Members on the data; with weights="self_check" also on a copy with `check_flip` of its labels flipped,
    whose injected flips choose the cross-fitted weights of the rank average (consensus.self_check_weights).

    `agreement` (n,): human agreement with each row's label (NaN: unknown), e.g. the demo's annotator `confidence`
    (`agreement_name` names it in the params); with self-check weights, the weights then also track it (see
    `self_check_weights`), still cross-fitted."""
    from core.valuation.consensus import DEFAULT_MEMBERS, combine, member_ranks, self_check_weights

    names = [method_key(m) for m in (members or DEFAULT_MEMBERS)]
    if "consensus" in names:
        raise DataError("consensus cannot be a member of itself")
    if weights not in ("self_check", "equal"):
        raise DataError(f"consensus weights must be 'self_check' or 'equal' (got {weights!r})")
    calibrate = weights == "self_check" and len(names) > 1
    rounds = 2 if calibrate else 1

    def run_members(labels: NDArray[np.int64], cleaner: ValidCleaner | None, r: int) -> list[Values]:
        out = []
        for i, name in enumerate(names):
            def sub(f: float, msg: str, partial: Any = None, i: int = i) -> None:
                what = "self-check copy: " if r == 1 else ""
                on_progress((r * len(names) + i + f) / (rounds * len(names)), f"{what}{name}: {msg}", None)
            opts = dict((member_options or {}).get(name, {}))
            out.append(_value_rows(name, Split(uids, X, labels), valid=valid, held=held, seed=seed, classes=classes,
                                   valid_fraction=valid_fraction, max_valid=max_valid, continue_from=None,
                                   report=sub, options=opts, clean=cleaner))
        return out

    results = run_members(y, clean, 0)
    if not calibrate:
        return combine(results, params={"seed": seed, "weights": "equal"}, seconds=time.perf_counter() - t0)
    n_classes = len(classes) if classes is not None else int(np.max(y) + 1)
    y_copy, injected = flip_labels(y, check_flip, n_classes=n_classes, seed=_seed(seed, 12))
    clean_copy = None
    if clean is not None:
        clean_copy = ValidCleaner.fit(X, y_copy, uids, threshold=clean.threshold, seed=seed)
    copy = run_members(y_copy, clean_copy, 1)
    if agreement is not None:
        agreement = np.asarray(agreement, dtype=np.float64)
        if agreement.shape != (len(uids),):
            raise DataError(f"the agreement column has {len(agreement)} values for {len(uids)} rows")
    fit = self_check_weights(member_ranks(copy, uids), injected, n_folds=check_folds, seed=seed, agreement=agreement)
    check = {"flip": check_flip, "n_injected": int(injected.sum()), **fit.describe()}
    if agreement is not None:
        check["agreement_column"] = agreement_name or "agreement"
    return combine(results, params={"seed": seed, "weights": "self_check", "self_check": check},
                   seconds=time.perf_counter() - t0, weights=fit.row_weights())
