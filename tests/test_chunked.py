"""core.chunked: row chunks mapped here, in joblib processes or on Dask; an unreachable scheduler is one clear error."""
from __future__ import annotations

import numpy as np
import pytest

from core import chunked
from core.errors import ModelError


def _row_sums(offset: float, X: np.ndarray) -> np.ndarray:
    return X.sum(1) + offset


def test_results_come_back_in_chunk_order_here_and_in_joblib():
    X = np.arange(70, dtype=np.float32).reshape(35, 2)
    chunks = chunked.row_chunks(np.arange(35)[::-1], 4)  # 9 chunks, rows in reverse order
    assert [len(c) for c in chunks] == [4] * 8 + [3]
    done = []
    here = chunked.map_chunks(_row_sums, 0.5, X, chunks, n_jobs=1, on_chunk=lambda d, t: done.append((d, t)))
    assert done[-1] == (9, 9)
    np.testing.assert_array_equal(np.concatenate(here), X[::-1].sum(1) + 0.5)
    jobs = chunked.map_chunks(_row_sums, 0.5, X, chunks, n_jobs=2)
    np.testing.assert_array_equal(np.concatenate(jobs), np.concatenate(here))


def test_an_unreachable_scheduler_is_one_error_naming_its_address():
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    X = np.zeros((4, 2), np.float32)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ModelError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
            chunked.map_chunks(_row_sums, 0.0, X, chunked.row_chunks(4, 2), scheduler="tcp://127.0.0.1:9")


def test_task_heap_raises_the_trim_threshold_for_a_task_and_restores_the_operators(monkeypatch):
    """In a Dask worker (MALLOC_TRIM_THRESHOLD_ set by its nanny) a task's temporaries reuse the heap; afterwards
    the operator's trim threshold and glibc's mmap threshold are back. The heap is not trimmed whole after each task
    (the next task would fault its memory in again): glibc trims its top at the next free."""
    calls: list[tuple] = []

    class Libc:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(chunked, "_libc", lambda: Libc())
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with chunked.task_heap():
        pass
    assert calls == []  # a plain process: glibc's own dynamic thresholds stay in force
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with pytest.raises(RuntimeError):
        with chunked.task_heap():
            assert calls == [("mallopt", -1, chunked.TASK_HEAP_THRESHOLD), ("mallopt", -3, chunked.TASK_HEAP_THRESHOLD)]
            raise RuntimeError("the task failed")
    assert calls[2:] == [("mallopt", -3, 128 * 1024), ("mallopt", -1, 65536)]  # restored even so


def test_task_heap_on_this_machines_libc(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with chunked.task_heap():
        total = sum(float((np.ones((100, 33)) @ np.ones((33, 1000))).sum()) for _ in range(20))
    assert total == 20 * 100 * 1000 * 33


def _rss_file_mib() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssFile:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def test_a_read_only_map_leaves_the_resident_set_and_reads_the_same_after(tmp_path):
    """A step that reads all of a memory-mapped embedding matrix does not keep it resident (1.5 GB at 1M x 384);
    the data read afterwards is unchanged, and a copy-on-write map (which may hold changes) is left alone."""
    if _rss_file_mib() is None:
        pytest.skip("needs Linux's /proc/self/status")
    path = tmp_path / "X.npy"
    X = np.random.default_rng(0).random((20_000, 400), dtype=np.float32)  # 32 MB
    np.save(path, X)
    M = np.load(path, mmap_mode="r")
    base = _rss_file_mib()
    total = float(np.asarray(M, dtype=np.float64).sum())  # every page touched
    touched = _rss_file_mib()
    assert touched - base > 25
    chunked.release_pages(M[5:])  # a view of the map releases the whole map
    assert _rss_file_mib() - base < 5
    assert float(np.asarray(M, dtype=np.float64).sum()) == total
    np.testing.assert_array_equal(M[123], X[123])

    C = np.load(path, mmap_mode="c")
    C[0, 0] = -1.0
    chunked.release_pages(C)
    assert C[0, 0] == -1.0
    chunked.release_pages(X)  # an ordinary array: nothing to do
