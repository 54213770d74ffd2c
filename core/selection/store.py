"""Clusters and subsets in the workspace: run kinds "clusters" and "selection", and the judge's cache."""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from core import decisions, runs
from core.errors import WorkspaceError
from core.selection.clusters import ROWS_PER_CLUSTER, Clusters, fit_clusters, k_reason, summarize_clusters
from core.selection.quality import cross_fitted_proba
from core.selection.strategies import Selection, clean_removal_count
from core.valuation.base import Values
from core.valuation.store import suggested_removal
from core.workspace import RunRecord, Workspace


def decided(ws: Workspace, dataset_id: int) -> tuple[list[str], list[str]]:
    """(removed, pinned): the uids a subset must leave out and must keep, from the decisions in force."""
    state = decisions.current(ws, dataset_id)
    return sorted(state.removed), sorted(state.pinned)


def ensure_clusters(ws: Workspace, dataset_id: int, X: NDArray[np.floating], uids: Sequence[str], *,
                    embedding_id: int | None, k: int | None = None, seed: int = 0, budget: int | None = None,
                    refit: bool = False, job_id: str | None = None,
                    on_progress: Callable[[float, str], None] | None = None,
                    scheduler: str | None = None) -> tuple[int, Clusters, bool]:
    """(run id, Clusters, fitted now) for this embedding, k and seed: reused from the workspace when there.

    With an automatic k and a budget, stored clusters with k above budget / 10 are not reused (k stays well below
    the budget); a refit searches only the k that fit. Clusters fitted here are recorded as a "clusters" run.
    `scheduler`: Dask scheduler for labelling the rows past `FIT_MAX` (`fit_clusters`); the same clusters anywhere.
    """
    u = np.asarray(uids, dtype=str)
    run = None if refit else find_clusters(ws, dataset_id, embedding_id=embedding_id, k=k, seed=seed)
    if run is not None and k is None and budget is not None and run.params.get("k", 0) > max(
            2, budget // ROWS_PER_CLUSTER):
        run = None
    if run is not None:
        cl = load_clusters(ws, run.id)
        if len(cl.uids) == len(u) and np.array_equal(cl.uids, u):
            return run.id, cl, False
    cl = fit_clusters(X, k=k, seed=seed, uids=u, budget=None if k else budget, on_progress=on_progress,
                      scheduler=scheduler)
    return save_clusters(ws, dataset_id, cl, embedding_id=embedding_id, job_id=job_id), cl, True


def cluster_summaries(ws: Workspace, run_id: int, clusters: Clusters, *, texts: Sequence[str],
                      labels: Sequence[str], X: NDArray[np.floating], values: Values | None,
                      values_run_id: int | None, classes: Sequence[str]) -> list[dict[str, Any]]:
    """The clusters run's summaries (`summarize_clusters`) with the named values run's values, stored on the run
    and reused while that values run is still the one named. Values that do not cover every row are left out."""
    run = ws.run(run_id)
    if run.result.get("summaries") and run.result.get("values_run_id") == values_run_id:
        return list(run.result["summaries"])
    vals = values
    if values is not None and not set(clusters.uids.tolist()) <= set(np.asarray(values.uids, dtype=str).tolist()):
        vals = None
    summ = summarize_clusters(clusters, list(texts), list(labels), X, vals, classes=classes)
    ws.update_run(run_id, result={"summaries": summ, "values_run_id": values_run_id})
    return summ


def removal_count(strategy: str, values: Values | None, values_run: RunRecord | None,
                  given: int | None = None) -> int | None:
    """How many lowest-valued rows drop-negative and clean-kmq drop: `given` when set; else the valuation run's
    suggested removal, except that clean-kmq drops the significantly harmful rows (None) when the values have
    standard errors (`clean_removal_count`)."""
    if given is not None:
        return int(given)
    suggested = suggested_removal(values_run)
    return clean_removal_count(values, suggested) if strategy.replace("-", "_") == "clean_kmq" else suggested


def save_clusters(ws: Workspace, dataset_id: int, clusters: Clusters, *, embedding_id: int | None = None,
                  summaries: Sequence[dict[str, Any]] | None = None, job_id: str | None = None) -> int:
    """Record clusters as a "clusters" run: frame (uid, cluster), centroids array, silhouette and summaries.

    Returns:
        The run id.
    """
    params = {"embedding_id": embedding_id, "k": clusters.k, "seed": clusters.seed,
              "k_requested": clusters.params.get("k_requested"), "k_grid": clusters.params.get("k_grid"),
              "sample_size": clusters.params.get("sample_size")}
    import pandas as pd

    with runs.recorded(ws, "clusters", dataset_id=dataset_id, method=clusters.method, params=params,
                       embedding_id=embedding_id, job_id=job_id) as run:
        ws.save_run_frame(run.id, pd.DataFrame({"uid": clusters.uids.astype(str), "cluster": clusters.labels}))
        rel = f"artefacts/clusters/{run.id}_centroids.npy"
        ws.write_array(rel, clusters.centroids)
        run.done({"k": clusters.k, "silhouette": {str(k): v for k, v in clusters.silhouette.items()},
                  "sizes": clusters.sizes.tolist(), "centroids": rel, "method": clusters.method,
                  "summaries": list(summaries or []), "params": clusters.params, "k_reason": k_reason(clusters)}, seconds=clusters.seconds)
    return run.id


def _finished(ws: Workspace, run_id: int, kind: str, what: str) -> tuple[RunRecord, Any]:
    """(the run, its frame) of a finished run of `kind`; WorkspaceError naming what it is instead."""
    run = ws.run(run_id)
    if run.kind != kind or run.status != "done":
        raise WorkspaceError(f"run {run_id} is a {run.status} {run.kind} run, not {what}")
    return run, ws.load_run_frame(run_id)


def load_clusters(ws: Workspace, run_id: int) -> Clusters:
    """The Clusters of a "clusters" run.

    Raises:
        WorkspaceError: If the run is missing or not a finished clusters run.
    """
    run, df = _finished(ws, run_id, "clusters", "finished clusters")
    cent = np.asarray(ws.read_array(run.result["centroids"]), dtype=np.float32)
    sil = {int(k): float(v) for k, v in run.result.get("silhouette", {}).items()}
    return Clusters(uids=df["uid"].to_numpy().astype(str), labels=df["cluster"].to_numpy().astype(np.int64),
                    centroids=cent, k=int(run.result["k"]), silhouette=sil, seed=run.params.get("seed"),
                    seconds=float(run.seconds or 0.0), method=run.method, params=dict(run.result.get("params", {})))


def find_clusters(ws: Workspace, dataset_id: int, *, embedding_id: int | None, k: int | None = None,
                  seed: int | None = 0) -> RunRecord | None:
    """The newest finished clusters run for this embedding with this k (None: k chosen by silhouette) and seed."""
    for run in ws.runs("clusters", dataset_id=dataset_id, status="done"):
        p = run.params
        if p.get("embedding_id") != embedding_id or p.get("seed") != seed:
            continue
        if k is not None and (p.get("k") == k or p.get("k_requested") == k):
            return run
        if k is None and p.get("k_requested") is None:
            return run
    return None


def save_selection(ws: Workspace, dataset_id: int, selection: Selection, *, embedding_id: int | None = None,
                   clusters_run_id: int | None = None, values_run_id: int | None = None,
                   job_id: str | None = None, note: str = "") -> int:
    """Record a subset as a "selection" run: frame (uid, cluster, reason, quality, round), params, weight history.

    Returns:
        The run id; fine-tuning, comparison and export read the subset from it.
    """
    params = dict(selection.params, strategy=selection.strategy, values_run_id=values_run_id,
                  clusters_run_id=clusters_run_id, embedding_id=embedding_id)
    if note:
        params["note"] = note
    with runs.recorded(ws, "selection", dataset_id=dataset_id, method=selection.strategy, params=params,
                       embedding_id=embedding_id, job_id=job_id, parent_id=clusters_run_id) as run:
        ws.save_run_frame(run.id, selection.to_frame())
        cl = selection.clusters[selection.clusters >= 0]
        per_cluster = {str(c): int(v) for c, v in zip(*np.unique(cl, return_counts=True))} if len(cl) else {}
        run.done({"n": len(selection), "history": selection.history, "per_cluster": per_cluster},
                 seconds=selection.seconds)
    return run.id


def load_selection(ws: Workspace, run_id: int) -> Selection:
    """The Selection of a "selection" run.

    Raises:
        WorkspaceError: If the run is missing or not a finished selection run.
    """
    run, df = _finished(ws, run_id, "selection", "a saved subset")
    n = len(df)
    return Selection(uids=df["uid"].to_numpy().astype(str),
                     clusters=df["cluster"].to_numpy().astype(np.int64) if "cluster" in df else np.full(n, -1),
                     quality=df["quality"].to_numpy().astype(np.float64) if "quality" in df else np.full(n, np.nan),
                     rounds=df["round"].to_numpy().astype(np.int64) if "round" in df else np.zeros(n, np.int64),
                     why=df["reason"].to_numpy().astype(object), strategy=run.method, params=dict(run.params),
                     history=list(run.result.get("history", [])), seconds=float(run.seconds or 0.0))


def last_selection(ws: Workspace, dataset_id: int) -> Selection | None:
    """The newest saved subset of the dataset, or None."""
    run = ws.latest_run("selection", dataset_id=dataset_id)
    return None if run is None else load_selection(ws, run.id)


def judge_proba(ws: Workspace | None, X: NDArray[np.floating], y: NDArray[np.integer], *, n_classes: int,
                embedding_id: int | None = None, seed: int = 0) -> NDArray[np.float64]:
    """The judge's cross-fitted class probabilities, cached in the workspace by embedding, labels and seed."""
    y = np.asarray(y, dtype=np.int64)
    if ws is None or embedding_id is None:
        return cross_fitted_proba(X, y, n_classes=n_classes, seed=seed)
    key = hashlib.sha1(y.tobytes() + f"{n_classes}:{seed}:cvp-C1".encode()).hexdigest()[:16]
    rel = f"artefacts/judge/emb{embedding_id}_{key}.npy"
    try:
        P = np.asarray(ws.read_array(rel), dtype=np.float64)
        if P.shape == (len(y), n_classes):
            return P
    except (WorkspaceError, OSError, ValueError):
        pass
    P = cross_fitted_proba(X, y, n_classes=n_classes, seed=seed)
    ws.write_array(rel, P)
    return P
