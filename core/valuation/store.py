"""A valuation run's values in the workspace: saved with the run in the `Values.to_frame` schema, loaded back as
`Values`, and the partial values of an interrupted iterative run kept as a checkpoint to resume from.
`record_values` values a dataset and records the run (the `value` step's library half); `record_audit` does the
same for the `audit` step."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from core import runs
from core.errors import DataError, WorkspaceError
from core.valuation.base import ProgressFn, Split, Values
from core.valuation.validation import CLEAN_THRESHOLD, value_dataset
from core.workspace import RunRecord, Workspace


def save_values(ws: Workspace, run_id: int, values: Values) -> None:
    """Write `values` as the run's frame (uid, value, stderr, count, extras)."""
    ws.save_run_frame(run_id, values.to_frame())


def load_values(ws: Workspace, run_id: int) -> Values:
    """The Values of a finished valuation run, with the run's method and parameters.

    Raises:
        DataError: The run is not a valuation run, or not finished.
        WorkspaceError: No such run, or its frame is missing.
    """
    run = ws.run(run_id)
    if run.kind != "values":
        raise DataError(f"run {run_id} is a {run.kind} run, not a valuation run; `python -m core runs` lists them")
    if run.status != "done":
        raise DataError(f"valuation run {run_id} is {run.status}; resume or rerun it first")
    return Values.from_frame(ws.load_run_frame(run_id), method=run.method, params=dict(run.params),
                             seconds=float(run.seconds or 0.0), source=f"run {run_id}")


def latest_values(ws: Workspace, dataset_id: int) -> tuple[Values | None, RunRecord | None]:
    """The newest finished valuation run of a dataset and its Values, or (None, None) when there is none usable."""
    run = ws.latest_run("values", dataset_id=dataset_id)
    if run is None:
        return None, None
    try:
        return load_values(ws, run.id), run
    except (DataError, WorkspaceError):
        return None, None


def suggested_removal(run: RunRecord | None) -> int | None:
    """A valuation run's suggested removal count, where it records one."""
    if run is None:
        return None
    res = run.result or {}
    for key in ("suggested_removal", "n_remove", "removal_count", "suggested_n_remove", "best_n_remove"):
        if isinstance(res.get(key), (int, float)):
            return int(res[key])
    for sub in ("transfer", "removal"):
        d = res.get(sub)
        if isinstance(d, dict):
            for key in ("n_remove", "count", "best_n_remove", "suggested_removal"):
                if isinstance(d.get(key), (int, float)):
                    return int(d[key])
    return None


def _partial_path(run_id: int) -> str:
    return f"artefacts/checkpoints/values-{int(run_id)}.parquet"


def save_partial(ws: Workspace, run_id: int, values: Values, fraction: float) -> None:
    """Keep an unfinished run's partial Values (and how far it got) to resume from."""
    rel = _partial_path(run_id)
    ws.write_frame(rel, values.to_frame())
    ws.save_checkpoint(run_id, "partial", {"relpath": rel, "method": values.method, "params": values.params,
                                           "seconds": values.seconds, "fraction": fraction})


def load_partial(ws: Workspace, run_id: int) -> tuple[Values | None, float]:
    """(the partial Values an interrupted run saved, the fraction done), or (None, 0.0) when none is readable."""
    ck = ws.checkpoints(run_id).get("partial")
    if not ck:
        return None, 0.0
    try:
        df = ws.read_frame(ck["relpath"])
    except (OSError, ValueError, WorkspaceError):
        return None, 0.0
    return (Values.from_frame(df, method=ck.get("method", ""), params=ck.get("params", {}),
                              seconds=float(ck.get("seconds", 0.0)), source=f"checkpoint of run {run_id}"),
            float(ck.get("fraction", 0.0)))


def drop_partial(ws: Workspace, run_id: int) -> None:
    (ws.path / _partial_path(run_id)).unlink(missing_ok=True)


class Checkpointer:
    """Saves partial Values of an iterative method at most every `every` seconds, or 20 times as long as the last
    save took (a checkpoint of a million rows takes seconds), and the first and last time."""

    def __init__(self, ws: Workspace, run_id: int, every: float = 2.0) -> None:
        self.ws, self.run_id, self.every, self.last, self.cost = ws, run_id, every, 0.0, 0.0

    def __call__(self, partial: Values, fraction: float) -> None:
        now = time.monotonic()
        if now - self.last < max(self.every, 20 * self.cost) and fraction < 1.0:
            return
        save_partial(self.ws, self.run_id, partial, fraction)
        self.last = time.monotonic()
        self.cost = self.last - now


def summary(values: Values) -> dict[str, Any]:
    """The figures recorded with a finished valuation run (rows, mean, range, rows below 0, median stderr)."""
    v = values.values
    return {"n_rows": len(v), "mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v)),
            "n_negative": int((v < 0).sum()), "median_stderr": float(np.nanmedian(values.stderr))
            if np.isfinite(values.stderr).any() else None}


def record_values(ws: Workspace, dataset_id: int, X: NDArray[np.floating], y: NDArray[np.int64],
                  uids: NDArray[np.str_], *, method: str, options: dict[str, Any], run_params: dict[str, Any],
                  embedding_id: int | None = None, job_id: str | None = None, valid: Split | None = None,
                  seed: int = 0, classes: Sequence[str] | None = None, valid_fraction: float = 0.1,
                  suggest_removal: bool = False, clean_valid: float | None = CLEAN_THRESHOLD, resume: bool = True,
                  on_progress: ProgressFn | None = None,
                  on_resume: Callable[[int, float], None] | None = None) -> tuple[int, Values, dict[str, Any]]:
    """Value every row (`value_dataset`) and record it as a "values" run: saved frame, summary, checkpoints.

    An unfinished run with exactly these `run_params` is taken up from its checkpoint (unless `resume` is False);
    `on_resume(run id, fraction done)` is told. Partial Values of iterative methods are checkpointed as they come.

    Returns:
        (run id, the Values, the recorded result).
    """

    resumable = ws.find_resumable("values", dataset_id=dataset_id, method=method, params=run_params) \
        if resume else None
    partial = None
    if resumable is not None:
        partial, done = load_partial(ws, resumable.id)
        if on_resume is not None:
            on_resume(resumable.id, done)
    report = on_progress or (lambda f, m, p=None: None)
    with runs.recorded(ws, "values", dataset_id=dataset_id, method=method, params=run_params,
                       embedding_id=embedding_id, job_id=job_id,
                       resume=None if resumable is None else resumable.id) as run:
        ckpt = Checkpointer(ws, run.id)

        def progress(fraction: float, message: str, part: Values | None = None) -> None:
            if part is not None:
                ckpt(part, fraction)
            report(fraction, message, None)

        values = value_dataset(X, y, uids, method=method, valid=valid, seed=seed, classes=classes,
                               suggest_removal=suggest_removal, continue_from=partial,
                               valid_fraction=valid_fraction, clean_valid=clean_valid, on_progress=progress,
                               **options)
        save_values(ws, run.id, values)
        drop_partial(ws, run.id)
        result: dict[str, Any] = {**summary(values), "method_params": values.params, "resumed": resumable is not None}
        removal = values.params.get("removal")
        if removal:
            result["suggested_removal"] = removal["n_remove_total"]
            result["removal"] = removal
        run.done(result, seconds=values.seconds)
    return run.id, values, result


def record_audit(ws: Workspace, dataset_id: int, X: NDArray[np.floating], y: NDArray[np.int64],
                 uids: NDArray[np.str_], *, methods: Sequence[str], flip: float, seed: int = 0,
                 valid: Split | None = None, valid_dataset: int | None = None, classes: Sequence[str] | None = None,
                 agreement: NDArray[np.floating] | None = None, agreement_name: str | None = None,
                 embedding_id: int | None = None, job_id: str | None = None,
                 on_progress: ProgressFn | None = None) -> tuple[int, list[dict[str, Any]], NDArray[np.bool_]]:
    """The self-check (`audit_dataset`) recorded as an "audit" run: its table in the result, the flips and every
    method's values in the run's frame (uid, flipped, value_<method>). `agreement`: a column of human agreement per
    row (`audit_dataset`), named `agreement_name` in the run.

    Returns:
        (run id, one row per method: method, auc, precision_at_k, seconds, the flipped mask).
    """
    import pandas as pd

    from core.valuation.audit import audit_dataset

    params = {"flip": flip, "methods": list(methods), "seed": seed, "valid_dataset": valid_dataset}
    named = {"agreement_column": agreement_name} if agreement_name else {}
    params.update(named)
    with runs.recorded(ws, "audit", dataset_id=dataset_id, method=",".join(methods), params=params,
                       embedding_id=embedding_id, job_id=job_id) as run:
        rows, flipped, results = audit_dataset(X, y, uids, methods=methods, flip=flip, valid=valid, seed=seed,
                                               classes=classes, agreement=agreement, on_progress=on_progress)
        df = pd.DataFrame({"uid": uids, "flipped": flipped})
        for k, v in results.items():
            df[f"value_{k}"] = v.values
        ws.save_run_frame(run.id, df)
        run.done({"rows": rows, "n_flipped": int(flipped.sum()), "n_rows": len(uids), **named})
    return run.id, rows, flipped
