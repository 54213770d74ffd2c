"""k-means past FIT_MAX rows: a sample fit, then every row labelled chunk by chunk (here, joblib or Dask workers)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from core.selection import clusters as clusters_mod
from core.selection import fit_clusters, summarize_clusters


def blobs(n_per=(400, 300, 200, 100), dim=16, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.repeat(np.arange(4), n_per)
    X = np.eye(dim)[:4][lab] * 5.0 + rng.normal(0, 0.6, size=(len(lab), dim))
    return X.astype(np.float32), lab


def digest(a) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]


def test_below_the_sampling_threshold_the_clusters_are_the_ones_computed_before_it_existed():
    # labels recorded from the code before the sampled path was added (same data, same seeds)
    X, _ = blobs()
    full = fit_clusters(X, k_grid=(2, 4, 8), seed=0)
    mini = fit_clusters(X, k_grid=(2, 4, 8), seed=0, sample_size=300, minibatch_above=500)
    assert (full.method, full.k, digest(full.labels)) == ("kmeans", 4, "e75495f5abd753dd")
    assert (mini.method, mini.k, digest(mini.labels)) == ("minibatch", 4, "e75495f5abd753dd")
    np.testing.assert_allclose(mini.centroids[0, :3], [0.90503, -0.00019, -0.00172], atol=1e-5)
    # the nearest-to-centroid examples (similarities now computed chunk by chunk) are the recorded ones too
    texts = [f"w{i % 7} x{i % 5}" for i in range(len(X))]
    s = summarize_clusters(mini, texts, ["a"] * len(X), X)
    assert [e["uid"] for e in s[0]["examples"]] == ["229", "297", "128", "279", "173"]
    assert [e["similarity"] for e in s[0]["examples"]] == [0.9663, 0.9635, 0.9632, 0.9624, 0.9621]


def test_summaries_do_not_depend_on_the_chunk_size(monkeypatch):
    X, _ = blobs()
    cl = fit_clusters(X, k=4, seed=0)
    texts = [f"w{i % 7} x{i % 5}" for i in range(len(X))]
    whole = summarize_clusters(cl, texts, ["a"] * len(X), X)
    monkeypatch.setattr(clusters_mod, "PREDICT_CHUNK", 97)
    assert summarize_clusters(cl, texts, ["a"] * len(X), X) == whole


def test_sampled_path_labels_every_row_the_same_here_in_joblib_and_on_a_local_cluster(monkeypatch, tmp_path):
    distributed = pytest.importorskip("distributed")
    X, true = blobs(n_per=(900, 700, 500, 300))
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")  # as the workspace hands embeddings out
    monkeypatch.setattr(clusters_mod, "PREDICT_CHUNK", 500)  # 5 chunks
    opts = dict(k_grid=(2, 4), seed=0, sample_size=300, fit_max=1000)
    here = fit_clusters(Xm, n_jobs=1, **opts)
    assert here.method == "minibatch-sampled" and here.k == 4 and len(here.labels) == len(X)
    for c in range(4):  # every row, not only the fitted sample, lands in its blob's cluster
        assert np.mean(true[here.labels == c] == np.bincount(true[here.labels == c]).argmax()) > 0.99
    jobs = fit_clusters(Xm, n_jobs=2, **opts)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        dask = fit_clusters(Xm, scheduler=c.scheduler_address, **opts)
        monkeypatch.setenv("WINNOW_DASK_SCHEDULER", c.scheduler_address)
        env = fit_clusters(Xm, n_jobs=1, **opts)
    for other in (jobs, dask, env):
        np.testing.assert_array_equal(other.labels, here.labels)
        np.testing.assert_array_equal(other.centroids, here.centroids)
