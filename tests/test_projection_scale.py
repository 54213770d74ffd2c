"""UMAP past max_fit: the rows outside the fitted sample are transformed chunk by chunk, here, in joblib processes or
on Dask workers, and the map is the same wherever the chunks run."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from core import projection
from core.projection import project, stratified_positions


def _blobs(n: int = 600, d: int = 16, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = rng.normal(0, 5, size=(3, d))
    return (centers[y] + rng.normal(0, 1, size=(n, d))).astype(np.float32), y


def test_sampled_map_is_the_same_in_chunks_in_joblib_and_on_a_local_cluster(monkeypatch, tmp_path):
    umap = pytest.importorskip("umap")
    distributed = pytest.importorskip("distributed")
    X, y = _blobs()
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")  # as the workspace hands embeddings out
    opts = dict(method="umap", seed=5, max_fit=200, strata=y)
    whole = project(Xm, n_jobs=1, **opts)  # the 400 rows past the sample in one transform call (the default chunk is 20,000)
    # the same map by hand: fit on the stratified sample, transform the rest at once (the algorithm as it was)
    idx = stratified_positions(len(X), 200, y, np.random.default_rng(5))
    ref = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, metric="cosine", random_state=5, low_memory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ref.fit_transform(X[idx])
        rest = np.setdiff1d(np.arange(len(X)), idx)
        np.testing.assert_array_equal(whole[idx], fitted)
        np.testing.assert_array_equal(whole[rest], ref.transform(X[rest]))

    monkeypatch.setattr(projection, "TRANSFORM_CHUNK", 150)  # 400 rows: chunks of 150, 150, 100
    here = project(Xm, n_jobs=1, **opts)
    jobs = project(Xm, n_jobs=2, **opts)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        seen = []
        dask = project(Xm, scheduler=c.scheduler_address, on_progress=lambda f, m="": seen.append(m), **opts)
    assert any("on Dask" in m for m in seen)
    np.testing.assert_array_equal(here[idx], whole[idx])
    for other in (jobs, dask):
        np.testing.assert_array_equal(other, here)
    # each chunk is transformed on its own, so the chunked map is a map of the same points: the blobs stay apart
    centroids = np.stack([here[y == k].mean(0) for k in range(3)])
    assert (np.linalg.norm(here[:, None] - centroids[None], axis=2).argmin(1) == y).mean() > 0.95
