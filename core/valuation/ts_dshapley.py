"""TS-DShapley: Shapley values of a cheap source classifier, estimated on many small stratified subsets.

Schoch, Mishra, Ji. *Data Selection for Fine-tuning Large Language Models Using Transferred Shapley Values*,
ACL SRW 2023, arXiv 2306.10165. Each of `n_passes` passes partitions the training rows, class-stratified, into
subsets of about `subset_size` rows; inside each subset, truncated Monte Carlo Shapley (Ghorbani & Zou 2019) over
`n_permutations` permutations values every row with a linear source classifier fitted on the prefix of each
permutation (PCA-32, standardised embeddings) and scored on the validation rows. A row's value is the mean of its
`n_passes` per-subset estimates, with their standard error. Winnow's defaults and their reasons: DESIGN.md.

The default source classifier is ridge least squares on one-hot targets. Adding a row to the prefix is an exact
rank-one (Sherman-Morrison) update of the inverse Gram matrix and of the validation scores, so every prefix of a
permutation costs O(d^2 + |V| c) instead of a refit, and all the permutations of a task run as one batch.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError
from core.sampling import stratified_partition
from core.valuation.base import Option, ProgressFn, Split, Values, checked
from core.valuation.source import (CLASSIFIER, N_COMPONENTS, RIDGE_ALPHA, TRUNCATION, UTILITY, Classifier, Utility,
                                   check_classes, check_finite, default_tolerance, full_utility, seeded_rng,
                                   source_features)
from core.valuation.tmc import run_chains


_SMALL_WORK = 3e8  # rows x passes x permutations x validation rows below which n_jobs=-1 stays in-process
_TASK_CHAINS = 256  # permutations batched in one task; fixed so results never depend on the worker count
_EST_PREFIX = "pass_"  # partial Values keep one per-pass estimate column per pass (NaN = not yet computed)
# A partial Values (for a checkpoint) costs O(rows x passes) to build: 1.3 s at 1M rows x 20 passes, against about
# 0.1 s per task. Up to _PARTIAL_ALWAYS cells every finished task hands one to on_progress; past it, at most one
# every _PARTIAL_EVERY seconds (or 20 times its own build time), and always the last. The values never change.
_PARTIAL_ALWAYS = 200_000
_PARTIAL_EVERY = 2.0

# ----------------------------------------------------------------------------------------------------------
# subsets, seeds, tasks
@dataclass(frozen=True)
class _Task:
    pass_idx: int
    first_subset: int
    subsets: tuple[NDArray[np.int64], ...]  # row indices of each subset


def _make_tasks(y: NDArray[np.int64], n_subsets: int, n_passes: int, n_permutations: int,
                entropy: int) -> list[_Task]:
    per_task = max(1, _TASK_CHAINS // n_permutations)
    tasks = []
    for k in range(n_passes):
        subsets = stratified_partition(y, n_subsets, seeded_rng(entropy, k))
        for j0 in range(0, n_subsets, per_task):
            tasks.append(_Task(k, j0, tuple(subsets[j0: j0 + per_task])))
    return tasks


def _run_task(task: _Task, Z, y, Zv, yv, opts: dict[str, Any], entropy: int
              ) -> tuple[int, NDArray[np.int64], NDArray[np.float64]]:
    """Values every row of a task's subsets: (pass index, rows, per-row estimate = mean over permutations).

    The chains run on the task's own rows only (its subsets are disjoint), so a task costs what its rows cost, not
    the whole matrix: handing all of Z to the chains copied it, augmented, in every task (264 MB at 1M rows)."""
    from threadpoolctl import threadpool_limits

    from core.chunked import task_heap

    P = opts["n_permutations"]
    with threadpool_limits(1), task_heap():
        rows_all = np.concatenate(task.subsets)
        Zt, yt = np.ascontiguousarray(Z[rows_all]), y[rows_all]
        starts = np.concatenate([[0], np.cumsum([len(r) for r in task.subsets])])
        L = max(len(s) for s in task.subsets)
        orders = np.full((len(task.subsets) * P, L), -1, dtype=np.int64)  # positions in Zt
        v_full = np.empty(len(task.subsets) * P)
        for j, rows in enumerate(task.subsets):
            local = slice(starts[j], starts[j + 1])
            vf = full_utility(Zt[local], yt[local], Zv, yv, n_classes=opts["n_classes"],
                              classifier=opts["classifier"], utility=opts["utility"], alpha=opts["ridge_alpha"],
                              C=opts["C"])
            for p in range(P):
                perm = seeded_rng(entropy, task.pass_idx, task.first_subset + j, p).permutation(len(rows))
                orders[j * P + p, : len(rows)] = starts[j] + perm
                v_full[j * P + p] = vf
        marg = run_chains(Zt, yt, Zv, yv, orders, v_full, n_classes=opts["n_classes"],
                          classifier=opts["classifier"], utility=opts["utility"], alpha=opts["ridge_alpha"],
                          C=opts["C"], tolerance=opts["tolerance"],
                          min_steps=int(np.ceil(0.1 * opts["subset_size"])))
        # every row's marginals summed over its subset's permutations (the subsets are disjoint: one pass)
        sums = np.zeros(len(rows_all) + 1)
        np.add.at(sums, np.where(orders < 0, len(rows_all), orders).ravel(), marg.ravel())
        est_out = []
        for j in range(len(task.subsets)):
            est = sums[starts[j]:starts[j + 1]] / P
            if opts["center"]:
                est = est - est.mean()
            est_out.append(est)
    return task.pass_idx, rows_all, np.concatenate(est_out)


def _task_done(task: _Task, est: NDArray[np.float64]) -> bool:
    rows = np.concatenate(task.subsets)
    return bool(np.isfinite(est[rows, task.pass_idx]).all())


def _iter_results(tasks: Sequence[_Task], args: tuple, *, n_jobs: int, scheduler: str | None) -> Iterator[Any]:
    """Run tasks locally (in-process, or joblib processes) or on a Dask cluster; yield results as they finish."""
    if not tasks:
        return
    if scheduler:
        from dask.distributed import as_completed

        from core.chunked import dask_client

        # the arrays go to every worker once (scattered), each task carries only its subsets' rows: through
        # joblib's dask backend the same 320 tasks of 40,000 rows ran no faster on 2 workers than on 1
        with dask_client(scheduler, "valuing") as client:
            arrays = client.scatter(list(args[:4]), broadcast=True)
            futures = [client.submit(_run_task, t, *arrays, *args[4:], pure=False) for t in tasks]
            try:
                for _, result in as_completed(futures, loop=client.loop, with_results=True):
                    yield result
            finally:
                client.cancel(futures)
        return
    if n_jobs == 1 or len(tasks) == 1:
        for t in tasks:
            yield _run_task(t, *args)
        return
    import joblib

    yield from joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        joblib.delayed(_run_task)(t, *args) for t in tasks)


def _resolve_jobs(n_jobs: int | None) -> int:
    cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return cpus
    return cpus + 1 + n_jobs if n_jobs < 0 else n_jobs


def estimates_to_values(uids, est: NDArray[np.float64], *, method: str, params: dict[str, Any], seconds: float,
                        keep_estimates: bool) -> Values:
    """Aggregate an (n, K) matrix of per-pass estimates (NaN = missing) into Values (mean, stderr, count)."""
    counts = np.isfinite(est).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, np.nansum(est, 1) / np.maximum(counts, 1), 0.0)
        dev = np.where(np.isfinite(est), est - mean[:, None], 0.0)
        var = (dev**2).sum(1) / np.maximum(counts - 1, 1)
        se = np.where(counts > 1, np.sqrt(var / np.maximum(counts, 1)), np.nan)
    extra = {f"{_EST_PREFIX}{k}": est[:, k].copy() for k in range(est.shape[1])} if keep_estimates else {}
    return Values(uids=np.asarray(uids), values=mean, stderr=se, counts=counts.astype(np.int64), method=method,
                  params=params, seconds=seconds, extra=extra)


def estimates_from_values(partial: Values, uids: NDArray[np.str_], n_passes: int) -> NDArray[np.float64]:
    """The (n, K) per-pass estimate matrix kept in a partial Values (aligned to `uids`); NaN where missing."""
    est = np.full((len(uids), n_passes), np.nan)
    pos = {u: i for i, u in enumerate(partial.uids)}
    idx = np.array([pos.get(u, -1) for u in uids])
    for k in range(n_passes):
        col = partial.extra.get(f"{_EST_PREFIX}{k}")
        if col is not None:
            col = np.asarray(col, dtype=np.float64)
            est[idx >= 0, k] = col[idx[idx >= 0]]
    return est


# ----------------------------------------------------------------------------------------------------------
@checked(Option("n_passes", int, "partitions of the data, estimates per row", low=1, high=1000,
                label="Passes K (estimates per row)"),
         Option("subset_size", int, "rows per subset m", low=2, high=1_000_000, label="Subset size m"),
         Option("n_permutations", int, "permutations inside each subset", low=1, high=1000,
                label="Permutations P per subset"),
         CLASSIFIER, UTILITY, N_COMPONENTS, RIDGE_ALPHA, TRUNCATION,
         Option("center", bool, "centre estimates per subset before aggregating"),
         Option("n_jobs", int, "worker processes (-1: all cores)", low=-1, high=4096, none_ok=True),
         Option("scheduler", str, "Dask scheduler address (None: $WINNOW_DASK_SCHEDULER)", none_ok=True))
def ts_dshapley(train: Split, *, valid: Split, n_passes: int = 20, subset_size: int = 100,
                n_permutations: int = 10, classifier: Classifier = "ridge", utility: Utility = "accuracy",
                n_components: int | None = 32, ridge_alpha: float = 10.0, C: float = 1.0,
                truncation: float | None = None, center: bool = False, n_jobs: int | None = -1,
                scheduler: str | None = None, seed: int | None = None, continue_from: Values | None = None,
                on_progress: ProgressFn | None = None) -> Values:
    """Transferred, sampling-based Shapley values (TS-DShapley) of every training row.

    Args:
        train: Rows to value (embeddings, integer labels, uids).
        valid: Rows the source classifier is scored on; must hold exactly the training classes.
        n_passes: K; each pass partitions the rows into subsets, so every row gets exactly K estimates.
            DESIGN.md starts from K = 10, P = 5; the exact incremental ridge makes marginal samples cheap enough
            to spend on K = 20, P = 10, which found flipped labels better (benchmarks/RESULTS.md).
        subset_size: m, rows per subset (sizes within +-1); every class needs at least one row per subset.
            The cost per pass does not grow with m; m = 300 or 1,000 found flipped labels less well.
        n_permutations: P, truncated Monte Carlo permutations inside each subset.
        classifier: "ridge" (exact incremental Sherman-Morrison updates, fast) or "logistic" (refitted per prefix,
            warm-started; slow).
        utility: "accuracy" on the validation rows, or the smooth "neg_mse" (minus squared error of the class
            scores) or "log_likelihood".
        n_components: PCA dimensions fitted on the training rows (None keeps the embedding), then standardised.
        ridge_alpha: L2 penalty of the ridge classifier on the standardised features (10: the best of 1-300 in
            benchmarks/RESULTS.md); C: inverse penalty of the logistic one.
        truncation: Stop a permutation once |v(subset) - v(prefix)| < truncation, never before 10 % of m;
            None means max(0.01, 1/|V|); 0 disables truncation.
        center: Subtract each subset's mean estimate before aggregating.
        n_jobs: Local worker processes (-1: all cores, or in-process when the work is under about a second);
            each worker uses one BLAS thread. Never changes the values.
        scheduler: Dask scheduler address (default: $WINNOW_DASK_SCHEDULER); runs the same tasks through
            joblib's dask backend with identical values.
        seed: Seeds are spawned per (pass, subset, permutation) with numpy's SeedSequence; None draws one and
            records it in `params`.
        continue_from: A partial result passed earlier to `on_progress`; its finished subsets are not recomputed.
        on_progress: Called after each finished task; with the partial Values (its extra holds the per-pass
            estimates `pass_<k>` needed to resume) after every task on small data, past 200,000 rows x passes
            at most every 2 s (and after the last task), else None.

    Returns:
        Values in the order of `train.uids`: the mean of the K per-subset estimates (units of the utility), its
        standard error and count.

    Raises:
        DataError: NaN embeddings, classes that differ between train and valid, or a class with fewer rows than
            there are subsets.
    """
    t0 = time.perf_counter()
    check_finite(train)
    check_finite(valid, "validation embeddings")
    check_classes(train, valid)
    if subset_size < 2 or n_passes < 1 or n_permutations < 1:
        raise DataError("subset_size must be at least 2, n_passes and n_permutations at least 1")
    n = len(train)
    n_subsets = max(1, int(round(n / subset_size)))
    classes, counts = np.unique(train.y, return_counts=True)
    if counts.min() < n_subsets:
        c = classes[counts.argmin()]
        need = int(np.ceil(n / counts.min()))
        raise DataError(f"class code {c} has {counts.min()} training row(s), fewer than the {n_subsets} subsets of "
                        f"{subset_size} rows, so some subsets would miss it; use a subset size of at least {need} "
                        f"(--subset-size {need}) or drop the class")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    scheduler = scheduler or os.environ.get("WINNOW_DASK_SCHEDULER") or None
    n_classes = int(max(train.y.max(), valid.y.max()) + 1)
    tol = default_tolerance(len(valid)) if truncation is None else float(truncation)
    params = dict(n_passes=n_passes, subset_size=subset_size, n_permutations=n_permutations, classifier=classifier,
                  utility=utility, n_components=n_components, ridge_alpha=ridge_alpha, C=C, truncation=tol,
                  center=center, seed=int(seed), n_valid=len(valid))
    Z, Zv = source_features(train.X, valid.X, n_components=n_components)
    opts = dict(n_classes=n_classes, classifier=classifier, utility=utility, ridge_alpha=ridge_alpha, C=C,
                tolerance=tol, subset_size=subset_size, center=center, n_permutations=n_permutations)
    tasks = _make_tasks(train.y, n_subsets, n_passes, n_permutations, int(seed))
    est = np.full((n, n_passes), np.nan)
    if continue_from is not None:
        _check_resumable(continue_from, params)
        est = estimates_from_values(continue_from, train.uids, n_passes)
    todo = [t for t in tasks if not _task_done(t, est)]
    done = len(tasks) - len(todo)
    elapsed0 = float(continue_from.seconds) if continue_from is not None else 0.0
    if on_progress:
        on_progress(done / len(tasks), f"{done}/{len(tasks)} tasks", None)
    jobs = _resolve_jobs(n_jobs)
    if n_jobs is not None and n_jobs < 0 and n * n_passes * n_permutations * len(valid) < _SMALL_WORK:
        jobs = 1  # under about a second of work: starting worker processes would cost more than it saves
    every = 0.0 if n * n_passes <= _PARTIAL_ALWAYS else _PARTIAL_EVERY
    last = time.perf_counter()
    for k, rows, e in _iter_results(todo, (Z, train.y, Zv, valid.y, opts, int(seed)), n_jobs=jobs,
                                    scheduler=scheduler):
        est[rows, k] = e
        done += 1
        if on_progress:
            partial = None
            if done == len(tasks) or time.perf_counter() - last >= every:
                b0 = time.perf_counter()
                partial = estimates_to_values(train.uids, est, method="ts_dshapley", params=params,
                                              seconds=elapsed0 + b0 - t0, keep_estimates=True)
                last = time.perf_counter()
                if every:  # large data: spaced by the build's own cost
                    every = max(_PARTIAL_EVERY, 20 * (last - b0))
            on_progress(done / len(tasks), f"{done}/{len(tasks)} tasks", partial)
    if on_progress and not todo:  # everything came from continue_from: still hand back a resumable partial
        on_progress(1.0, "restored from the checkpoint", estimates_to_values(
            train.uids, est, method="ts_dshapley", params=params, seconds=elapsed0, keep_estimates=True))
    return estimates_to_values(train.uids, est, method="ts_dshapley", params=params,
                               seconds=elapsed0 + time.perf_counter() - t0, keep_estimates=False)


def _check_resumable(partial: Values, params: dict[str, Any]) -> None:
    keys = ("n_passes", "subset_size", "n_permutations", "classifier", "utility", "n_components", "ridge_alpha",
            "C", "truncation", "center", "seed")
    diff = [k for k in keys if partial.params.get(k) != params.get(k)]
    if diff:
        raise DataError(f"cannot continue from a run with different options ({', '.join(diff)})")
