"""What the map and the Inspect page need from the engine, as plain functions the tests drive directly.

- `selection_rows`: a recorded `st.plotly_chart(..., on_select=...)` payload -> row positions (via `customdata`,
  one integer per point, because `point_index` counts inside one trace and a filtered trace holds a subset).
- `ensure_predictions`: the source classifier's view of every row (cross-fitted logistic regression on the
  embeddings, the same judge the selection step uses): predicted label, its probability, p(given label).
- `nearest_neighbours`: cosine neighbours of a few rows, for "why does this row look wrong".
- `align_values`, `align_column`, `member_ranks`, `harmful_order`, `decision_column`: frames aligned with the
  dataset's row order, read from runs in the workspace.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.errors import WorkspaceError
from core.workspace import Decision, Workspace

# ------------------------------------------------------------------------------------------ map selection


def _as_int(v: Any) -> int | None:
    if isinstance(v, (list, tuple)):
        v = v[0] if v else None
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f) or f != int(f):
        return None
    return int(f)


def _fast_rows(points: Any, n_rows: int) -> NDArray[np.int64] | None:
    """selection_rows for the usual payload (every point a dict with a scalar numeric customdata), vectorised: a
    lasso of 20,000 points costs milliseconds instead of a Python check per point. None when it does not apply."""
    if not isinstance(points, list) or not points:
        return None
    try:
        got = np.array([p["customdata"] for p in points], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    if got.ndim != 1 or not np.isfinite(got).all() or (got != np.round(got)).any():
        return None
    rows = got.astype(np.int64)
    return np.unique(rows[(rows >= 0) & (rows < n_rows)])


def selection_rows(state: Any, n_rows: int, *, positions: Sequence[int] | NDArray[np.integer] | None = None
                   ) -> NDArray[np.int64]:
    """Row positions chosen in a plotly selection event.

    Args:
        state: What `st.plotly_chart(..., on_select="rerun")` returns (or its `selection` part, or None): a
            mapping with `selection.points`, each point carrying `customdata` (the row position, a scalar or a
            one-element list) and `point_index`.
        n_rows: Rows in the dataset; positions outside [0, n_rows) are dropped.
        positions: The row position of each point of the trace, used only for points without `customdata`.

    Returns:
        Sorted unique row positions (int64); empty when nothing is selected.
    """
    if state is None:
        return np.zeros(0, dtype=np.int64)
    sel = state.get("selection", state) if isinstance(state, Mapping) else getattr(state, "selection", None)
    if sel is None:
        return np.zeros(0, dtype=np.int64)
    points = sel.get("points", []) if isinstance(sel, Mapping) else getattr(sel, "points", [])
    fast = _fast_rows(points, n_rows)
    if fast is not None:
        return fast
    rows: list[int] = []
    for p in points or []:
        if not isinstance(p, Mapping):
            continue
        r = _as_int(p.get("customdata"))
        if r is None and positions is not None:
            i = _as_int(p.get("point_index", p.get("pointIndex")))
            if i is not None and 0 <= i < len(positions):
                r = int(positions[i])
        if r is not None and 0 <= r < n_rows:
            rows.append(r)
    return np.unique(np.asarray(rows, dtype=np.int64))


# ------------------------------------------------------------------------------------------ aligned columns


def _positions(frame_uids: Sequence[str], uids: Sequence[str]) -> NDArray[np.int64]:
    a, b = np.asarray(frame_uids, dtype=object), np.asarray(uids, dtype=object)
    if len(a) == len(b) and bool((a == b).all()):  # already in the dataset's order (the usual case): no hashing
        return np.arange(len(b), dtype=np.int64)
    return pd.Index(pd.Series(frame_uids).astype(str)).get_indexer(pd.Index([str(u) for u in uids]))


def align_column(frame: pd.DataFrame, column: str, uids: Sequence[str], fill: Any = np.nan) -> NDArray[Any]:
    """`frame[column]` reordered to `uids` (by frame["uid"]); `fill` where a uid is missing."""
    pos = _positions(frame["uid"], uids)
    src = frame[column].to_numpy()
    numeric = src.dtype.kind in "iufb" and isinstance(fill, float)
    out = np.full(len(uids), fill, dtype=np.float64 if numeric else object)
    ok = pos >= 0
    out[ok] = src[pos[ok]]
    return out


def align_values(frame: pd.DataFrame, uids: Sequence[str]) -> pd.DataFrame:
    """A values run's frame (uid, value, stderr, count, extras) reindexed to `uids` (NaN where missing)."""
    pos = _positions(frame["uid"], uids)
    out = frame.reset_index(drop=True).reindex(pos).reset_index(drop=True)
    out["uid"] = [str(u) for u in uids]
    return out


def member_ranks(frame: pd.DataFrame) -> list[str]:
    """The per-member rank columns of a consensus frame (``rank_<method>``, 0 = that member's lowest value)."""
    return [c for c in frame.columns if c.startswith("rank_")]


def agreeing_members(row: Mapping[str, Any], members: Sequence[str], *, threshold: float = 0.1) -> list[str]:
    """Members that rank this row among their lowest `threshold` share (they call it harmful)."""
    out = []
    for c in members:
        v = row.get(c)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and float(v) <= threshold:
            out.append(c.removeprefix("rank_"))
    return out


def decision_column(decisions: Mapping[str, Decision], uids: Sequence[str]) -> NDArray[np.object_]:
    """The current decision per row ("remove", "keep", "relabel", or "" when undecided)."""
    return np.array([decisions[u].action if u in decisions else "" for u in map(str, uids)], dtype=object)


def harmful_order(values: NDArray[np.floating], *, exclude: NDArray[np.bool_] | None = None) -> NDArray[np.int64]:
    """Row positions from the lowest value up (rows without a value last; `exclude` rows left out)."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(np.where(np.isnan(v), np.inf, v), kind="stable")
    if exclude is not None:
        order = order[~np.asarray(exclude, dtype=bool)[order]]
    return order.astype(np.int64)


# ------------------------------------------------------------------------------------------ source classifier


def _predictions_relpath(embedding_id: int) -> str:
    return f"artefacts/predictions/emb{int(embedding_id)}.parquet"


def load_predictions(ws: Workspace, embedding_id: int, uids: Sequence[str]) -> pd.DataFrame | None:
    """Stored predictions of this embedding aligned with `uids`, or None when not computed (or stale)."""
    try:
        df = ws.read_frame(_predictions_relpath(embedding_id))
    except (WorkspaceError, OSError, ValueError):
        return None
    if len(df) != len(uids) or (df["uid"].astype(str).to_numpy() != np.asarray([str(u) for u in uids])).any():
        return None
    return df


def ensure_predictions(ws: Workspace, embedding_id: int, X: NDArray[np.floating], uids: Sequence[str],
                       labels: Sequence[str], classes: Sequence[str], *, seed: int = 0) -> pd.DataFrame:
    """The source classifier's out-of-fold view of every row, computed once per embedding.

    The classifier is a logistic regression on the embeddings, cross-fitted over 5 folds (each row is predicted by
    a model that never saw it); it is the selection step's judge and shares its cache.

    Returns:
        Frame aligned with `uids`: uid, pred (class name), confidence (p of pred), p_given (p of the given label).
    """
    hit = load_predictions(ws, embedding_id, uids)
    if hit is not None:
        return hit
    from core.selection.store import judge_proba

    classes = list(classes)
    y = pd.Categorical(pd.Series(list(labels), dtype=object), categories=classes).codes.astype(np.int64)
    if (y < 0).any():
        raise WorkspaceError("some labels are not among the dataset's classes; reload the dataset")
    P = judge_proba(ws, np.asarray(X, dtype=np.float32), y, n_classes=len(classes), embedding_id=embedding_id,
                    seed=seed)
    pred = P.argmax(axis=1)
    df = pd.DataFrame({"uid": [str(u) for u in uids], "pred": np.asarray(classes, dtype=object)[pred],
                       "confidence": P[np.arange(len(P)), pred], "p_given": P[np.arange(len(P)), y]})
    ws.write_frame(_predictions_relpath(embedding_id), df)
    return df


# ------------------------------------------------------------------------------------------ neighbours


def nearest_neighbours(X: NDArray[np.floating], rows: Sequence[int], *, k: int = 5,
                       chunk: int = 50_000) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The k most cosine-similar rows to each of `rows` (itself excluded).

    Returns:
        (idx (m, k) row positions, sim (m, k) cosine similarities), most similar first.
    """
    rows = np.asarray(rows, dtype=np.int64)
    n = len(X)
    k = int(min(k, max(n - 1, 0)))
    if len(rows) == 0 or k == 0:
        return np.zeros((len(rows), 0), np.int64), np.zeros((len(rows), 0), np.float32)
    Q = np.asarray(X[rows], dtype=np.float32)
    Q /= np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-12)
    sims = np.empty((len(rows), n), dtype=np.float32)
    for start in range(0, n, chunk):
        B = np.asarray(X[start:start + chunk], dtype=np.float32)
        B = B / np.maximum(np.linalg.norm(B, axis=1, keepdims=True), 1e-12)
        sims[:, start:start + len(B)] = Q @ B.T
    sims[np.arange(len(rows)), rows] = -np.inf
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.argsort(-sims, axis=1)[:, :k]
    order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
    idx = np.take_along_axis(top, order, axis=1)
    return idx.astype(np.int64), np.take_along_axis(sims, idx, axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------------ agreement


def method_ranks(frames: Mapping[str, pd.DataFrame], uids: Sequence[str]) -> pd.DataFrame:
    """Each method's normalised rank of every row (0 = that method's lowest value), aligned with `uids`.

    Args:
        frames: Method name -> its values frame (uid, value, ...). A consensus frame's own ``rank_<member>``
            columns are used as they are.

    Returns:
        Frame with one column ``rank_<method>`` per method (NaN where a method has no value for a row).
    """
    from core.valuation.consensus import normalised_rank

    out: dict[str, NDArray[np.float64]] = {}
    for method, frame in frames.items():
        aligned = align_values(frame, uids)
        members = member_ranks(aligned)
        if members:
            for c in members:
                out.setdefault(c, aligned[c].to_numpy(np.float64))
            continue
        v = aligned["value"].to_numpy(np.float64)
        r = np.full(len(v), np.nan)
        ok = ~np.isnan(v)
        if ok.sum() > 0:
            r[ok] = normalised_rank(v[ok])
        out.setdefault(f"rank_{method}", r)
    return pd.DataFrame(out, index=pd.RangeIndex(len(uids)))
