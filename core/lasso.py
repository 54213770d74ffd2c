"""Server-side lasso and box selection: every row under the drawn shape, not only the points the browser drew.

A plotly selection in Streamlit (`st.plotly_chart(..., on_select="rerun")`) returns, beside the drawn points it hit,
the geometry of what was drawn, in data coordinates:

- `selection.lasso`: a list of polygons `{"xref": "x", "yref": "y", "x": [...], "y": [...]}`;
- `selection.box`: a list of rectangles `{"xref": "x", "yref": "y", "x": [x0, x1], "y": [y0, y1]}`.

When the map draws only a sample of the rows, or a density image, `curation.selection_rows` (which reads the points'
`customdata`) sees only what was drawn. `rows_in_selection` resolves the shapes against the coordinates of every
row instead: a row is selected when it lies inside any lasso polygon (even-odd rule, as plotly uses) or any box
(edges included); several shapes (shift-drag) are a union.

The point-in-polygon test is an even-odd ray cast vectorised over points: points are sorted by y once, and each
polygon edge only touches the points whose y lies in its span (two binary searches), so a lasso over a million
points costs roughly (points in the polygon's bounding box) x log + (points crossed by edges), not points x edges.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["Shapes", "selection_shapes", "points_in_polygon", "points_in_box", "rows_in_selection"]

# polygons as (k, 2) float arrays; boxes as (x0, x1, y0, y1) with x0 <= x1, y0 <= y1
Shapes = tuple[list[NDArray[np.float64]], list[tuple[float, float, float, float]]]


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _floats(v: Any) -> NDArray[np.float64] | None:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if a.ndim == 1 else None


def _on_axes(shape: Any, xref: str, yref: str) -> bool:
    return str(_get(shape, "xref", "x") or "x") == xref and str(_get(shape, "yref", "y") or "y") == yref


def selection_shapes(state: Any, *, xref: str = "x", yref: str = "y") -> Shapes:
    """The lasso polygons and boxes of a plotly selection event, in data coordinates.

    Args:
        state: What `st.plotly_chart(..., on_select="rerun")` returns, its `selection` part, an object with a
            `selection` attribute, or None.
        xref, yref: Keep only shapes drawn on these axes (a map has one pair: "x", "y").

    Returns:
        (polygons, boxes): each polygon a (k, 2) array of its vertices (k >= 3, non-finite vertices dropped), each
        box (x0, x1, y0, y1) sorted. Malformed shapes are skipped; an empty selection gives ([], []).
    """
    polygons: list[NDArray[np.float64]] = []
    boxes: list[tuple[float, float, float, float]] = []
    if state is None:
        return polygons, boxes
    sel = _get(state, "selection", None) if _get(state, "selection", None) is not None else state
    for shape in _get(sel, "lasso", None) or []:
        if not _on_axes(shape, xref, yref):
            continue
        x, y = _floats(_get(shape, "x")), _floats(_get(shape, "y"))
        if x is None or y is None or len(x) != len(y):
            continue
        xy = np.column_stack([x, y])
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) >= 3:
            polygons.append(xy)
    for shape in _get(sel, "box", None) or []:
        if not _on_axes(shape, xref, yref):
            continue
        x, y = _floats(_get(shape, "x")), _floats(_get(shape, "y"))
        if x is None or y is None or len(x) < 2 or len(y) < 2:
            continue
        x0, x1, y0, y1 = float(x.min()), float(x.max()), float(y.min()), float(y.max())
        if all(math.isfinite(v) for v in (x0, x1, y0, y1)):
            boxes.append((x0, x1, y0, y1))
    return polygons, boxes


def points_in_box(xy: NDArray[np.floating], box: Sequence[float]) -> NDArray[np.bool_]:
    """Mask of the points of `xy` (n, 2) inside the box (x0, x1, y0, y1), edges included."""
    x0, x1, y0, y1 = box
    x, y = xy[:, 0], xy[:, 1]
    return (x >= min(x0, x1)) & (x <= max(x0, x1)) & (y >= min(y0, y1)) & (y <= max(y0, y1))


def points_in_polygon(xy: NDArray[np.floating], polygon: NDArray[np.floating]) -> NDArray[np.bool_]:
    """Mask of the points of `xy` (n, 2) inside `polygon` (k, 2), by the even-odd rule.

    The polygon may be open or closed (last vertex = first) and may cross itself. A point crosses edge
    (x1, y1)-(x2, y2) when min(y1, y2) <= y < max(y1, y2) and x < the edge's x at that y, computed with the same
    arithmetic as the classic pnpoly test (so the answer is exactly pnpoly's, boundary points included: those fall on
    either side). Non-finite points are outside.
    """
    xy = np.asarray(xy, dtype=np.float64)
    poly = np.asarray(polygon, dtype=np.float64)
    n = len(xy)
    inside = np.zeros(n, dtype=bool)
    if n == 0 or len(poly) < 3:
        return inside
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    cand = np.flatnonzero((xy[:, 0] >= lo[0]) & (xy[:, 0] <= hi[0]) & (xy[:, 1] >= lo[1]) & (xy[:, 1] <= hi[1]))
    if len(cand) == 0:
        return inside
    order = np.argsort(xy[cand, 1], kind="stable")
    cand = cand[order]
    px, py = xy[cand, 0], xy[cand, 1]
    hit = np.zeros(len(cand), dtype=bool)
    xs, ys = poly[:, 0], poly[:, 1]
    xs2, ys2 = np.roll(xs, -1), np.roll(ys, -1)  # edge i runs from vertex i to vertex i + 1 (the last closes it)
    for x1, y1, x2, y2 in zip(xs.tolist(), ys.tolist(), xs2.tolist(), ys2.tolist()):
        if y1 == y2:
            continue  # horizontal: no point's y is in [y1, y1)
        a, b = np.searchsorted(py, min(y1, y2), side="left"), np.searchsorted(py, max(y1, y2), side="left")
        if a == b:
            continue
        band = slice(a, b)
        hit[band] ^= px[band] < (x1 - x2) * (py[band] - y2) / (y1 - y2) + x2  # pnpoly's arithmetic, exactly
    inside[cand] = hit
    return inside


def rows_in_selection(state: Any, xy: NDArray[np.floating], *,
                      rows: Sequence[int] | NDArray[np.integer] | None = None, xref: str = "x",
                      yref: str = "y") -> NDArray[np.int64]:
    """Every row whose map position lies inside the selection's lasso polygons or boxes.

    Use it when the map draws a sample or a density image: the browser's `selection.points` then holds only the
    drawn points, while the shapes cover every row under them.

    Args:
        state: The selection event (see `selection_shapes`).
        xy: (n, 2) map coordinates of the candidate rows, in the plot's data coordinates (the same x and y the
            figure was drawn with). NaN coordinates are never selected.
        rows: The row position of each line of `xy` (default: 0..n-1), e.g. the rows left after a filter.
        xref, yref: The axes the map is drawn on.

    Returns:
        Sorted unique row positions (int64) inside any shape; empty when the event has no lasso or box.

    Raises:
        ValueError: If `xy` is not (n, 2) or `rows` does not have n entries.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"map coordinates must be an (n, 2) array, got shape {xy.shape}")
    if rows is not None and len(rows) != len(xy):
        raise ValueError(f"rows has {len(rows)} entries for {len(xy)} coordinates")
    polygons, boxes = selection_shapes(state, xref=xref, yref=yref)
    if not polygons and not boxes:
        return np.zeros(0, dtype=np.int64)
    mask = np.zeros(len(xy), dtype=bool)
    for box in boxes:
        mask |= points_in_box(xy, box)
    for poly in polygons:
        mask |= points_in_polygon(xy, poly)
    picked = np.flatnonzero(mask)
    if rows is not None:
        picked = np.asarray(rows, dtype=np.int64)[picked]
    return np.unique(picked.astype(np.int64))
