"""Run one function over row chunks: here, in joblib processes, or on a Dask cluster; results in chunk order.

Clustering and projection at scale fit on a sample and then label or place every row chunk by chunk
(`clusters.fit_clusters`, `projection.project`). Each chunk is an independent call of the same function on the same
fitted model, so where the chunks run does not change the answer: one process, `n_jobs` joblib workers, or the
workers of the Dask scheduler at `scheduler` (default $WINNOW_DASK_SCHEDULER) give identical output.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

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


def release_pages(X: Any) -> None:
    """Drop the pages of a read-only memory-mapped array (`np.load(..., mmap_mode="r")`) from this process's resident
    memory. They stay in the operating system's page cache, so reading them again is a soft fault, not a disk read;
    without this, a step that reads all of a 1M x 384 float32 map holds 1.5 GB more resident than it needs. Other
    arrays (and copy-on-write maps, whose pages may hold changes) are left alone."""
    mm = getattr(X, "_mmap", None)
    if mm is None or getattr(X, "mode", None) != "r" or not hasattr(mm, "madvise"):
        return
    import mmap

    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError, AttributeError):  # a closed map, or a platform without MADV_DONTNEED
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_GLIBC_MMAP_THRESHOLD = 128 * 1024  # glibc's initial mmap threshold, in force while a trim threshold is set
TASK_HEAP_THRESHOLD = 64 << 20


@functools.cache
def _libc() -> Any:
    """glibc (for `mallopt`, `malloc_trim`), or None elsewhere; looked up once per process (`find_library` runs
    `ldconfig`, about 1.4 ms, and `task_heap` wraps every task)."""
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else None


@contextlib.contextmanager
def task_heap() -> Iterator[None]:
    """Inside a Dask worker started with MALLOC_TRIM_THRESHOLD_ (Dask's nanny sets 64 KiB), let one task's
    numpy temporaries reuse the heap, then give the memory back as the operator asked.

    With that variable set, glibc trims the heap after nearly every free of a few hundred KB and maps every larger
    block afresh, so code that makes many small matrices (TS-DShapley's permutation chains) ran 2-4x slower in a
    worker than in a plain process. For the task's duration the trim and mmap thresholds are raised; afterwards the
    operator's trim threshold and glibc's mmap threshold are restored (glibc then trims the heap's top at the next
    free). Elsewhere (no such variable, not glibc) it does nothing.
    """
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    lib = _libc() if trim is not None else None
    if lib is None:
        yield
        return
    lib.mallopt(_M_TRIM_THRESHOLD, TASK_HEAP_THRESHOLD)
    lib.mallopt(_M_MMAP_THRESHOLD, TASK_HEAP_THRESHOLD)
    try:
        yield
    finally:
        lib.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD)
        try:
            lib.mallopt(_M_TRIM_THRESHOLD, int(trim))
        except ValueError:
            pass
        # no malloc_trim(0) here: with the operator's threshold back, glibc trims the top of the heap at the next
        # free; trimming everything after each task made the next one fault its memory in again
        # (benchmarks/RESULTS.md, "task heap")


def resolve_scheduler(scheduler: str | None) -> str | None:
    """The Dask scheduler address to use: `scheduler`, else $WINNOW_DASK_SCHEDULER, else None (run here)."""
    return scheduler or os.environ.get("WINNOW_DASK_SCHEDULER") or None


def row_chunks(rows: NDArray[np.int64] | int, size: int) -> list[NDArray[np.int64]]:
    """`rows` (positions, or a count meaning 0..n-1) cut into consecutive pieces of at most `size`."""
    idx = np.arange(rows, dtype=np.int64) if isinstance(rows, (int, np.integer)) else np.asarray(rows, np.int64)
    return [idx[s:s + size] for s in range(0, len(idx), max(1, int(size)))]


def _heap_call(func: Callable[..., Any], model: Any, X: NDArray[np.floating]) -> Any:
    """One chunk on a Dask worker, inside `task_heap` (benchmarks/bench_task_heap.py measures both ways)."""
    with task_heap():
        return func(model, X)


def map_chunks(func: Callable[..., Any], model: Any, X: NDArray[np.floating], chunks: Sequence[NDArray[np.int64]], *,
               n_jobs: int = 1, scheduler: str | None = None,
               on_chunk: Callable[[int, int], None] | None = None) -> list[Any]:
    """[func(model, X[chunk]) for chunk in chunks], computed here, in joblib workers or on Dask workers.

    Only one chunk of X is materialised at a time here (X may be a memory-mapped (n, d) array); on a cluster the
    model is scattered once and each task receives its own chunk, and runs inside `task_heap`.

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
                    fut = client.submit(_heap_call, func, remote, np.ascontiguousarray(X[rows]), pure=False)
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
