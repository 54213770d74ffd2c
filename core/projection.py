"""2-D coordinates of the embeddings for the map: UMAP (cosine), or PCA for tiny data.

UMAP (McInnes, Healy, Melville, arXiv 1802.03426) is fitted on every row up to `max_fit` rows: on the demo, fitting
all rows took less time than fitting a 2,000- or 8,000-row sample and transforming the rest, at the same
trustworthiness (`benchmarks/bench_projection.py`, benchmarks/RESULTS.md), so the sample-and-transform path is only
for data past `max_fit` (a class-stratified sample when `strata` is given). Seeded, both paths give the same map
every time (umap-learn then runs on one thread: the cost is measured there too).
Coordinates are recorded in the workspace as a run of kind "projection" (frame uid, x, y) keyed by the embedding
and the parameters, so the map reads them instead of recomputing.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, Literal, Sequence

import numpy as np
from numpy.typing import NDArray

from core import chunked, runs, sampling
from core.workspace import RunRecord, Workspace

Method = Literal["auto", "umap", "pca"]
METHODS: tuple[str, ...] = ("auto", "umap", "pca")
PCA_BELOW = 500  # rows; "auto" uses PCA below this (UMAP on a few hundred points mostly shows its own noise)
Progress = Callable[..., None]
TRANSFORM_CHUNK = 20_000  # rows per UMAP transform call past max_fit (each chunk runs here or on a worker)


def resolve_method(method: str, n_rows: int) -> str:
    """The method `project` will use for `n_rows` rows: "umap" or "pca"."""
    if method not in METHODS:
        raise TypeError(f"unknown projection method {method!r}; one of {METHODS}")
    if method == "auto":
        return "pca" if n_rows < PCA_BELOW else "umap"
    return method


def _pca(X: NDArray[np.floating]) -> NDArray[np.float32]:
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(axis=0, keepdims=True)
    out = np.zeros((len(Xc), 2), dtype=np.float32)
    if len(Xc) < 2 or Xc.shape[1] == 0:
        return out
    _, _, vt = np.linalg.svd(Xc, full_matrices=False)
    k = min(2, vt.shape[0])
    comps = vt[:k]
    # deterministic signs: the largest loading of each component is positive
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    signs[signs == 0] = 1.0
    out[:, :k] = (Xc @ (comps * signs[:, None]).T).astype(np.float32)
    return out


def stratified_positions(n: int, size: int, strata: Sequence[Any] | None, rng: np.random.Generator
                         ) -> NDArray[np.int64]:
    """Sorted positions of a sample of `size` of `n` rows, stratified by `strata` (`core.sampling`; each stratum
    keeps >= 1 row), or a plain random sample without strata."""
    if strata is None:
        return np.sort(rng.choice(n, size=size, replace=False))
    return sampling.stratified_sample(strata, size, rng)


_NUMBA_CACHED = False


def cache_numba() -> int:
    """Keep UMAP's numba compilations on disk, so only the first process ever compiles them.

    umap-learn and pynndescent compile most of their kernels (the layout optimiser, the fuzzy simplicial set, the
    nearest-neighbour descent, ...) without numba's `cache=True`, so every new process paid the compilation again
    (DESIGN.md: about 30 s on the first call; what caching saves: benchmarks/RESULTS.md, First run). Kernels
    pynndescent builds at run time as closures cannot be cached.
    Caching is switched on for each of its not-yet-compiled dispatchers; numba then writes the machine code next to
    umap's sources (or, when that folder is read-only, to its user-wide cache, or to $NUMBA_CACHE_DIR when set).
    Functions numba cannot cache are compiled per process as before. Returns how many dispatchers were switched.
    """
    global _NUMBA_CACHED
    if _NUMBA_CACHED:
        return 0
    import importlib

    from numba.core.registry import CPUDispatcher

    switched = 0
    for name in ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.sparse", "umap.spectral",
                 "pynndescent.pynndescent_", "pynndescent.utils", "pynndescent.distances", "pynndescent.rp_trees",
                 "pynndescent.sparse", "pynndescent.sparse_nndescent", "pynndescent.graph_utils"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            if name == "umap.umap_":  # umap is not importable here (a stub in tests): try again next time
                return 0
            continue
        for obj in list(vars(mod).values()):
            if isinstance(obj, CPUDispatcher) and obj._cache.__class__.__name__ == "NullCache" \
                    and not obj.overloads:
                try:
                    obj.enable_caching()
                    switched += 1
                except Exception:  # noqa: BLE001 (a function numba cannot cache: compiled per process)
                    pass
    _NUMBA_CACHED = True
    return switched


def warm_up(dim: int = 384, metric: str = "cosine") -> None:
    """Compile (or load from numba's disk cache) UMAP's kernels with a tiny fit; a no-op after the first call.

    The first run calls it in a thread while the texts are embedded, so the one-off compilation of a new machine
    overlaps the embedding instead of delaying the first map.
    """
    import warnings

    import umap

    cache_numba()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, dim)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        umap.UMAP(n_components=2, n_neighbors=10, metric=metric, random_state=0, low_memory=True,
                  n_epochs=5).fit_transform(X)


_TRANSFORM_LOCK = threading.Lock()


def _transform_chunk(reducer: Any, X: NDArray[np.float32]) -> NDArray[np.float32]:
    """UMAP `transform` of one chunk of rows (here, in a joblib worker or on a Dask worker). A chunk's coordinates
    depend only on the fitted reducer and the chunk's rows (umap re-seeds every call with its transform_seed), so
    where and in which order the chunks run does not change the map."""
    import warnings

    cache_numba()
    # one transform at a time per process: a worker with several threads shares the reducer, whose search index
    # is prepared lazily on the first call
    with _TRANSFORM_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*gradient function is not yet implemented.*")
        return np.asarray(reducer.transform(X), dtype=np.float32)


def project(X: NDArray[np.floating], *, method: Method | str = "auto", n_neighbors: int = 15, min_dist: float = 0.1,
            metric: str = "cosine", seed: int | None = 0, max_fit: int = 100_000,
            strata: Sequence[Any] | None = None, on_progress: Progress | None = None,
            expected_seconds: float | None = None, n_jobs: int = -1,
            scheduler: str | None = None) -> NDArray[np.float32]:
    """Project embeddings to 2-D for the map.

    Args:
        X: (n, d) embeddings.
        method: "umap", "pca", or "auto" (PCA below 500 rows, else UMAP).
        n_neighbors: UMAP's neighbourhood size (capped at n - 1).
        min_dist: UMAP's minimum distance between embedded points.
        metric: UMAP's input metric.
        seed: Makes UMAP deterministic (and single-threaded); None lets it use every core.
        max_fit: UMAP fits on at most this many rows and `transform`s the rest.
        strata: (n,) labels for a stratified fitting sample when n > max_fit.
        on_progress: Called as on_progress(fraction, message).
        expected_seconds: How long the fit should take (from an earlier map's measured rate): UMAP reports no
            progress of its own, so the bar moves along this estimate (never past 98 %) and shows the time left.
        n_jobs: joblib processes for the transform of the rows past `max_fit` (-1, the default: one per core; 1: in
            this process).
        scheduler: Dask scheduler address for that transform (default $WINNOW_DASK_SCHEDULER). The chunks are the
            same wherever they run, so the map is the same.

    Returns:
        (n, 2) float32 coordinates, aligned with X.
    """
    X = np.asarray(X, dtype=np.float32)  # a float32 memory-mapped array stays mapped (no copy)
    if X.ndim != 2:
        raise TypeError(f"X must be 2-D (n, d), got shape {X.shape}")
    n = len(X)
    report = on_progress or (lambda fraction, message="": None)
    used = resolve_method(method, n)
    if used == "pca" or n < 4:
        report(0.0, "PCA")
        coords = _pca(X)
        report(1.0, "PCA done")
        return coords
    import warnings

    scheduler = chunked.resolve_scheduler(scheduler) if n > max_fit else None
    report(0.02, "loading UMAP (the first call compiles for ~30 s)")
    import umap  # heavy: numba compiles on first use (once per machine: see cache_numba)

    cache_numba()

    nn = int(max(2, min(n_neighbors, n - 1)))
    reducer = umap.UMAP(n_components=2, n_neighbors=nn, min_dist=float(min_dist), metric=metric,
                        random_state=seed, low_memory=True, verbose=False)
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")  # random_state forces one thread: expected
        warnings.filterwarnings("ignore", message=".*gradient function is not yet implemented.*")
        if n <= max_fit:
            report(0.1, f"UMAP on {n:,} rows")
            with _ticking(report, 0.1, 0.98, expected_seconds, f"UMAP on {n:,} rows"):
                coords = reducer.fit_transform(X)
        else:
            idx = stratified_positions(n, int(max_fit), strata, rng)
            report(0.1, f"UMAP fit on a sample of {len(idx):,} of {n:,} rows")
            with _ticking(report, 0.1, 0.5, expected_seconds, f"UMAP fit on {len(idx):,} of {n:,} rows"):
                fitted = reducer.fit_transform(X[idx])
            coords = np.empty((n, 2), dtype=np.float32)
            coords[idx] = fitted
            rest = np.setdiff1d(np.arange(n), idx)
            parts = chunked.row_chunks(rest, TRANSFORM_CHUNK)
            where = f" on Dask ({scheduler})" if scheduler else (" in joblib processes" if n_jobs != 1 else "")
            report(0.5, f"UMAP transform of {len(rest):,} rows{where}")
            placed = chunked.map_chunks(
                _transform_chunk, reducer, X, parts, n_jobs=n_jobs, scheduler=scheduler,
                on_chunk=lambda d, t: report(0.5 + 0.5 * d / t, f"UMAP transform {d}/{t} chunks{where}"))
            for part, xy in zip(parts, placed):
                coords[part] = xy
    report(1.0, "UMAP done")
    return np.asarray(coords, dtype=np.float32)


@contextlib.contextmanager
def _ticking(report: Progress, start: float, end: float, expected: float | None, message: str):
    """While the block runs, report progress from `start` toward `end` along `expected` seconds (once a second)."""
    if not expected or expected <= 0:
        yield
        return
    import threading

    stop = threading.Event()
    t0 = time.monotonic()

    def tick() -> None:
        while not stop.wait(1.0):
            frac = min((time.monotonic() - t0) / expected, 1.0)
            report(start + (end - start) * frac, message)

    th = threading.Thread(target=tick, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join(2.0)


def expected_seconds(ws: Workspace, n_rows: int) -> float | None:
    """The seconds a UMAP fit of `n_rows` rows should take, from the newest finished UMAP run's rows per second."""
    for run in ws.runs("projection", method="umap", status="done"):
        rows = (run.result or {}).get("rows")
        if rows and run.seconds and run.seconds > 0 and not run.params.get("max_fit", 1e12) < rows:
            return float(run.seconds) * n_rows / float(rows)
    return None


def projection_params(n_rows: int, *, method: str = "auto", n_neighbors: int = 15, min_dist: float = 0.1,
                      metric: str = "cosine", seed: int | None = 0, max_fit: int = 100_000) -> dict[str, Any]:
    """The parameters that key a projection run (method resolved; UMAP-only options dropped for PCA)."""
    used = resolve_method(method, n_rows)
    if used == "pca":
        return {"method": "pca"}
    return {"method": "umap", "n_neighbors": int(n_neighbors), "min_dist": float(min_dist), "metric": metric,
            "seed": seed, "max_fit": int(max_fit)}


def find_projection(ws: Workspace, dataset_id: int, embedding_id: int, n_rows: int, **params: Any) -> RunRecord | None:
    """The newest finished projection run of this embedding with these parameters, or None."""
    key = projection_params(n_rows, **params)
    for run in ws.runs("projection", dataset_id=dataset_id, method=key["method"], status="done"):
        if run.embedding_id == embedding_id and run.params == key:
            return run
    return None


def load_projection(ws: Workspace, run_id: int, uids: Sequence[str]) -> NDArray[np.float32]:
    """(n, 2) coordinates of a projection run, aligned with `uids` (NaN for uids the run lacks)."""
    import pandas as pd

    df = ws.load_run_frame(run_id)
    a, b = df["uid"].to_numpy(dtype=object), np.asarray(uids, dtype=object)
    if len(a) == len(b) and bool((a == b).all()):  # in the dataset's order (the usual case): no hashing
        pos = np.arange(len(b))
    else:
        pos = pd.Index(df["uid"].astype(str)).get_indexer(pd.Index([str(u) for u in uids]))
    coords = np.full((len(uids), 2), np.nan, dtype=np.float32)
    ok = pos >= 0
    coords[ok, 0] = df["x"].to_numpy(np.float32)[pos[ok]]
    coords[ok, 1] = df["y"].to_numpy(np.float32)[pos[ok]]
    return coords


def ensure_projection(ws: Workspace, dataset_id: int, embedding_id: int, X: NDArray[np.floating],
                      uids: Sequence[str], *, job_id: str | None = None, strata: Sequence[Any] | None = None,
                      on_progress: Progress | None = None, n_jobs: int = -1, scheduler: str | None = None,
                      **params: Any) -> tuple[int, NDArray[np.float32]]:
    """Coordinates for the map, computed once per (embedding, parameters) and kept in the workspace.

    Args:
        X: (n, d) embeddings of `embedding_id`, aligned with `uids`.
        params: `project`'s options (method, n_neighbors, min_dist, metric, seed, max_fit).
        n_jobs, scheduler: Where the rows past max_fit are transformed (`project`); not part of the run's key, as
            they do not change the map.

    Returns:
        (run_id, coords (n, 2) float32): an existing run with the same key is reused.
    """
    import pandas as pd

    n = len(uids)
    if len(X) != n:
        raise TypeError(f"X has {len(X)} rows but {n} uids were given")
    hit = find_projection(ws, dataset_id, embedding_id, n, **params)
    if hit is not None:
        coords = load_projection(ws, hit.id, uids)
        if not np.isnan(coords).any():
            return hit.id, coords
    key = projection_params(n, **params)
    with runs.recorded(ws, "projection", dataset_id=dataset_id, method=key["method"], params=key,
                       embedding_id=embedding_id, job_id=job_id) as run:
        coords = project(X, strata=strata, on_progress=on_progress, expected_seconds=expected_seconds(ws, n),
                         n_jobs=n_jobs, scheduler=scheduler,
                         **{k: v for k, v in key.items() if k != "method"}, method=key["method"])
        ws.save_run_frame(run.id, pd.DataFrame({"uid": [str(u) for u in uids], "x": coords[:, 0],
                                                "y": coords[:, 1]}))
        run.done({"rows": n})
    return run.id, coords


_stratified_sample = stratified_positions  # the old private name
