"""core.projection: PCA for tiny data, UMAP otherwise, cached per embedding and parameters; the `project` CLI."""
from __future__ import annotations

import numpy as np
import pytest

from core import projection
from core.projection import ensure_projection, find_projection, project, projection_params


def _blobs(n: int = 120, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    centers = rng.normal(0, 5, size=(3, d))
    return (centers[y] + rng.normal(0, 1, size=(n, d))).astype(np.float32), y


def test_auto_uses_pca_for_tiny_data_and_keeps_clusters_apart():
    X, y = _blobs()
    coords = project(X)
    assert coords.shape == (len(X), 2) and coords.dtype == np.float32
    assert projection.resolve_method("auto", len(X)) == "pca"
    assert projection.resolve_method("auto", 10_000) == "umap"
    centroids = np.stack([coords[y == k].mean(0) for k in range(3)])
    within = np.mean([np.linalg.norm(coords[y == k] - centroids[k], axis=1).mean() for k in range(3)])
    between = min(np.linalg.norm(centroids[i] - centroids[j]) for i in range(3) for j in range(i + 1, 3))
    assert between > within


def test_pca_is_deterministic_and_handles_degenerate_input():
    X, _ = _blobs(50)
    assert np.array_equal(project(X, method="pca"), project(X.copy(), method="pca"))
    assert project(np.ones((3, 4), np.float32)).shape == (3, 2)
    assert project(np.zeros((1, 4), np.float32)).shape == (1, 2)
    with pytest.raises(TypeError):
        project(np.zeros(5))


def test_stratified_sample_keeps_every_class():
    rng = np.random.default_rng(0)
    strata = np.array(["a"] * 900 + ["b"] * 90 + ["c"] * 10)
    idx = projection._stratified_sample(len(strata), 100, strata, rng)
    assert len(idx) == 100 and len(np.unique(idx)) == 100
    got = {k: int((strata[idx] == k).sum()) for k in "abc"}
    assert got == {"a": 90, "b": 9, "c": 1}


def test_ensure_projection_records_and_reuses_a_run(ws):
    X, _ = _blobs(80)
    uids = [f"u{i}" for i in range(len(X))]
    ds = ws.register_dataset(name="blobs", source="test", fingerprint="blobs80", n_rows=len(X), classes=["a", "b", "c"])
    run_id, coords = ensure_projection(ws, ds, 7, X, uids)
    run = ws.run(run_id)
    assert (run.kind, run.status, run.embedding_id, run.params) == ("projection", "done", 7, {"method": "pca"})
    assert list(ws.load_run_frame(run_id).columns) == ["uid", "x", "y"]
    again_id, again = ensure_projection(ws, ds, 7, X, uids)
    assert again_id == run_id and np.array_equal(again, coords)
    assert find_projection(ws, ds, 8, len(uids)) is None  # another embedding: no hit
    # uid order is honoured when reading back
    back = projection.load_projection(ws, run_id, uids[::-1])
    assert np.array_equal(back, coords[::-1])


def test_params_key_drops_umap_options_for_pca():
    assert projection_params(100, n_neighbors=5) == {"method": "pca"}
    key = projection_params(1000, n_neighbors=5, seed=3)
    assert key["method"] == "umap" and key["n_neighbors"] == 5 and key["seed"] == 3


class _StubUMAP:
    """Records how `project` drives UMAP: fit on which rows, transform which rows."""

    log: list[tuple[str, int]] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def fit_transform(self, X):
        _StubUMAP.log.append(("fit", len(X)))
        return X[:, :2].copy()

    def transform(self, X):
        _StubUMAP.log.append(("transform", len(X)))
        return X[:, :2].copy()


def test_umap_fits_all_rows_up_to_max_fit_then_samples(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_StubUMAP))
    X, y = _blobs(600, d=4)
    _StubUMAP.log = []
    coords = project(X, n_neighbors=30, seed=1)
    assert _StubUMAP.log == [("fit", 600)] and np.allclose(coords, X[:, :2])
    _StubUMAP.log = []
    coords = project(X, method="umap", max_fit=200, strata=y)
    assert _StubUMAP.log == [("fit", 200), ("transform", 400)]
    assert np.allclose(coords, X[:, :2])  # every row lands where the (stub) model put it, in input order


@pytest.mark.slow
def test_umap_for_real():
    """One real UMAP fit (cosine); the first call in a process pays numba's compilation (tens of seconds)."""
    X, y = _blobs(200, d=8)
    progress = []
    coords = project(X, method="umap", n_neighbors=10, seed=0, on_progress=lambda f, m="": progress.append(f))
    assert coords.shape == (200, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert progress[-1] == 1.0
    # neighbours in the input stay neighbours on the map: the nearest point is from the same blob
    d = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (y[d.argmin(1)] == y).mean() > 0.9


def test_project_cli_reuses_the_run(ws, monkeypatch, capsys):
    """`python -m core project` embeds (faked here), records a projection run, and reuses it on a second call."""
    from core import __main__ as cli
    from core.cli import common
    from demo_workspace import fake_embed

    calls = []

    def fake_embeddings(args, w, loaded, on_progress=None):
        calls.append(loaded.dataset_id)
        X = fake_embed([str(t) for t in loaded.ds["text"]])
        return 5, X

    import core.cli.project as project_cli

    monkeypatch.setattr(common, "get_embeddings", fake_embeddings)
    monkeypatch.setattr(project_cli, "get_embeddings", fake_embeddings)
    csv = ws.path.parent / "tiny.csv"
    rows = [f"text number {i} {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}" for i in range(40)]
    csv.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert cli.main(["--workspace", str(ws.path), "project", str(csv)]) == 0
    runs = ws.runs("projection")
    assert len(runs) == 1 and runs[0].embedding_id == 5 and runs[0].method == "pca"
    assert cli.main(["--workspace", str(ws.path), "project", str(csv)]) == 0
    assert len(ws.runs("projection")) == 1 and "(reused)" in capsys.readouterr().out
    from core import curation

    uids = list(ws.load_run_frame(runs[0].id)["uid"])
    preds = curation.load_predictions(ws, 5, uids)
    assert preds is not None and set(preds["pred"]) <= {"neg", "pos"}


def test_umap_kernels_are_cached_on_disk_across_processes():
    """umap-learn's kernels compile once per machine, not once per process (cache_numba switches numba's cache)."""
    pytest.importorskip("umap")
    projection.cache_numba()
    import umap.layouts
    import umap.umap_

    for fn in (umap.layouts._nb_optimize_layout_euclidean_single_epoch, umap.umap_.smooth_knn_dist,
               umap.umap_.compute_membership_strengths):
        assert type(fn._cache).__name__ != "NullCache", fn
    assert projection.cache_numba() == 0  # once per process


def test_same_seed_same_map():
    """The seeded UMAP map is reproducible (umap-learn runs single-threaded with random_state); `project --help`
    promises it. Measured on 4,500 demo embeddings in two processes: identical coordinates."""
    pytest.importorskip("umap")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 16)).astype(np.float32)
    a = project(X, method="umap", seed=7)
    b = project(X.copy(), method="umap", seed=7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, project(X, method="umap", seed=8))


def test_same_seed_same_map_past_max_fit():
    """Past `max_fit` rows the map is fitted on a stratified sample and the rest transformed: that path is seeded
    too (the sample, the fit and the transform), so the same seed gives the same map there as well."""
    pytest.importorskip("umap")
    X, y = _blobs(600, d=16, seed=4)
    a = project(X, method="umap", seed=5, max_fit=200, strata=y)
    b = project(X.copy(), method="umap", seed=5, max_fit=200, strata=y)
    assert a.shape == (600, 2) and np.isfinite(a).all()
    assert np.array_equal(a, b)


def test_umap_bar_moves_along_the_last_maps_rate(ws, monkeypatch):
    """UMAP reports no progress of its own: the bar follows the previous map's measured rows per second."""
    X, _ = _blobs(80)
    ds = ws.register_dataset(name="blobs", source="test", fingerprint="b", n_rows=80, classes=["a", "b", "c"])
    assert projection.expected_seconds(ws, 1000) is None
    rid = ws.create_run("projection", dataset_id=ds, method="umap", params={"method": "umap", "max_fit": 100_000})
    ws.update_run(rid, status="done", seconds=10.0, result={"rows": 2000})
    assert projection.expected_seconds(ws, 4000) == pytest.approx(20.0)
    seen = []
    with projection._ticking(lambda f, m="": seen.append(f), 0.1, 0.9, 2.0, "UMAP"):
        import time

        time.sleep(2.6)
    assert seen and 0.1 < seen[0] < seen[-1] <= 0.9
