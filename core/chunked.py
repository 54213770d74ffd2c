"""Run one function over row chunks: here, in joblib processes, or on a Dask cluster; results in chunk order.

Clustering and projection at scale fit on a sample and then label or place every row chunk by chunk
(`clusters.fit_clusters`, `projection.project`). Each chunk is an independent call of the same function on the same
fitted model, so where the chunks run does not change the answer: one process, `n_jobs` joblib workers, or the
workers of the Dask scheduler at `scheduler` (default $WINNOW_DASK_SCHEDULER) give identical output.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from core.errors import ModelError


def dask_client(scheduler: str, what: str = "running") -> Any:
    """A `dask.distributed.Client` of the scheduler at `scheduler` (not made the default client).

    Raises:
        ModelError: If dask.distributed is missing or the scheduler cannot be reached (one line naming the address).
    """
    try:
        from dask.distributed import Client
    except ImportError as e:  # pragma: no cover - a requirement
        raise ModelError(f"{what} on a Dask cluster needs dask.distributed: `pip install 'dask[distributed]'`") \
            from e
    try:
        return Client(scheduler, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise ModelError(f"cannot reach the Dask scheduler at {scheduler} ({type(e).__name__}: {e}); start it "
                         "(`dask scheduler`) or fix --scheduler / WINNOW_DASK_SCHEDULER") from e


def resolve_scheduler(scheduler: str | None) -> str | None:
    """The Dask scheduler address to use: `scheduler`, else $WINNOW_DASK_SCHEDULER, else None (run here)."""
    return scheduler or os.environ.get("WINNOW_DASK_SCHEDULER") or None


def row_chunks(rows: NDArray[np.int64] | int, size: int) -> list[NDArray[np.int64]]:
    """`rows` (positions, or a count meaning 0..n-1) cut into consecutive pieces of at most `size`."""
    idx = np.arange(rows, dtype=np.int64) if isinstance(rows, (int, np.integer)) else np.asarray(rows, np.int64)
    return [idx[s:s + size] for s in range(0, len(idx), max(1, int(size)))]


def map_chunks(func: Callable[..., Any], model: Any, X: NDArray[np.floating], chunks: Sequence[NDArray[np.int64]], *,
               n_jobs: int = 1, scheduler: str | None = None,
               on_chunk: Callable[[int, int], None] | None = None) -> list[Any]:
    """[func(model, X[chunk]) for chunk in chunks], computed here, in joblib workers or on Dask workers.

    Only one chunk of X is materialised at a time here (X may be a memory-mapped (n, d) array); on a cluster the
    model is scattered once and each task receives its own chunk.

    Args:
        func: A module-level function (picklable) of (model, rows of X).
        model: The fitted object every call shares.
        X: (n, d) array; read chunk by chunk.
        chunks: Row positions per call.
        n_jobs: joblib processes when no scheduler is used (1: in this process; -1: one per core).
        scheduler: Dask scheduler address; default $WINNOW_DASK_SCHEDULER.
        on_chunk: Called as on_chunk(chunks done, chunks) as results arrive.

    Raises:
        ModelError: If the scheduler cannot be reached.
    """
    scheduler = resolve_scheduler(scheduler)
    out: list[Any] = [None] * len(chunks)
    report = on_chunk or (lambda done, total: None)
    if not chunks:
        return out
    if scheduler:
        from dask.distributed import as_completed

        with dask_client(scheduler) as client:
            [remote] = client.scatter([model], broadcast=True)
            window = 2 * max(1, len(client.scheduler_info().get("workers", {})))  # chunks in flight at once
            futures: dict[Any, int] = {}
            pending = iter(enumerate(chunks))

            def submit_next(queue: Any) -> None:
                nxt = next(pending, None)
                if nxt is not None:
                    i, rows = nxt
                    fut = client.submit(func, remote, np.ascontiguousarray(X[rows]), pure=False)
                    futures[fut] = i
                    queue.add(fut)

            queue = as_completed([], loop=client.loop)
            for _ in range(window):
                submit_next(queue)
            done = 0
            try:
                for fut in queue:
                    out[futures.pop(fut)] = fut.result()
                    del fut
                    done += 1
                    report(done, len(chunks))
                    submit_next(queue)
            finally:
                client.cancel(list(futures))
        return out
    if n_jobs == 1 or len(chunks) == 1:
        for i, rows in enumerate(chunks):
            out[i] = func(model, np.ascontiguousarray(X[rows]))
            report(i + 1, len(chunks))
        return out
    import joblib

    def tasks() -> Iterable[Any]:
        for rows in chunks:
            yield joblib.delayed(func)(model, np.ascontiguousarray(X[rows]))

    for i, res in enumerate(joblib.Parallel(n_jobs=n_jobs, return_as="generator")(tasks())):
        out[i] = res
        report(i + 1, len(chunks))
    return out
