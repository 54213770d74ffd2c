"""Recording a step as a run: create it (or take up an unfinished one), tie it to its job, and mark it done,
failed or cancelled. Every step that records a run goes through `recorded`."""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from core import jobs
from core.workspace import Workspace


class Recording:
    """The run being recorded: `id`, seconds since the start, and `done` to finish it."""

    def __init__(self, ws: Workspace, run_id: int, seconds_before: float = 0.0) -> None:
        self.ws, self.id, self.t0, self.finished = ws, run_id, time.perf_counter() - seconds_before, False

    @property
    def elapsed(self) -> float:
        """Seconds since the start, plus the `seconds_before` the recording was given."""
        return time.perf_counter() - self.t0

    def done(self, result: dict[str, Any] | None = None, *, seconds: float | None = None) -> None:
        """Mark the run done with its result (merged into what is recorded) and seconds (default: elapsed)."""
        self.ws.update_run(self.id, status="done", result=result,
                           seconds=self.elapsed if seconds is None else seconds)
        self.finished = True


@contextlib.contextmanager
def recorded(ws: Workspace, kind: str, *, dataset_id: int | None, method: str,
             params: dict[str, Any] | None = None, embedding_id: int | None = None, job_id: str | None = None,
             parent_id: int | None = None, resume: int | None = None, seconds_before: float = 0.0,
             attach: bool = True) -> Iterator[Recording]:
    """Record the block as a run of `kind`: yields a Recording; the block calls `.done(result)`.

    `resume`: the id of an unfinished run to take up instead of creating one. A block that ends without calling
    `done` marks the run done. An exception marks the run failed (a BaseException such as
    `core.errors.Cancelled` or KeyboardInterrupt: cancelled)
    with the error in its result, and goes on up. `seconds_before`: seconds already spent (a resumed run's, the
    setup before the block), counted in `elapsed`. `attach=False` keeps the job pointing at the run it has (a child
    run, such as one fine-tune of a comparison, records `job_id` without becoming the job's run).
    """
    if resume is not None:
        run_id = int(resume)
        ws.update_run(run_id, status="running")
    else:
        run_id = ws.create_run(kind, dataset_id=dataset_id, method=method, params=params,
                               embedding_id=embedding_id, job_id=job_id, parent_id=parent_id)
    if attach:
        jobs.attach_run(ws, job_id, run_id)
    rec = Recording(ws, run_id, seconds_before)
    try:
        yield rec
    except BaseException as e:
        status = "failed" if isinstance(e, Exception) else "cancelled"  # Cancelled, KeyboardInterrupt
        ws.update_run(run_id, status=status, result={"error": str(e)[:2000]}, seconds=rec.elapsed)
        raise
    if not rec.finished:
        rec.done()


def called(ws: Workspace, run: Any) -> str:
    """A run as the CLI names it to a person: its number within its dataset and kind, and the id that commands take
    ("subset 1 (run id 13)"). `run`: a RunRecord or an id."""
    rec = ws.run(run) if isinstance(run, int) else run
    return f"{rec.name} (run id {rec.id})"
