"""The Map's large-data path: a density image of every point under a Scattergl sample, with lasso and box selections
resolved on the server against every row (core.density draws the image, core.lasso resolves the shapes).

The Map page builds its usual one-trace figure (the colour choice, the filters, the legend) and, above
`core.density.threshold()` points, hands it to `draw` instead of `st.plotly_chart`: `draw` keeps the figure's colours
(a float colour is averaged per pixel, an integer one takes the pixel's majority), its legend and colour bar, and
returns the selected row positions exactly like `core.curation.selection_rows` does on the small map.

Streamlit gives the server the selection (points, lasso polygons, boxes) but not zoom or pan (relayout events), so a
zoom inside the chart only enlarges the image; the "View window" sliders re-render a window at full resolution
(the image, and a fresh sample of the points inside it). A figure that changes is a new chart to Streamlit: the
browser draws it again (about 1.5 s for the image and 20,000 WebGL points in software) and forgets the lasso drawn on
it. So a lasso leaves the figure exactly as it was: the chart itself shows the lasso and highlights the drawn points
under it, and only the count and the table below change. The selection is also kept here, in the session; once the
figure changes for another reason (a new window, colour or filter) the chart no longer shows it, and from then on it is
drawn as a dotted outline plus an overlay of the selected rows. "Clear the selection" forgets it (and changes the
figure, so the chart drops its lasso too).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import streamlit as st

from core import curation, density, lasso

SAMPLE = 20_000  # points drawn over the image (seeded sample of the rows inside the window)
SELECTED_DRAWN = 10_000  # selected rows drawn as the overlay (a seeded sample beyond; a lasso sends drawn points back)
WIDTH, HEIGHT = 1000, 600  # image pixels (about the plot's size on screen)
SEL = "map.big.selection"  # {"event": the selection event consumed last, "shapes": the selection kept, "gen": n,
#   "native": the figure (base signature) whose chart shows the selection itself, "overlay": whether the last
#   figure sent drew it, "reset": clears so far}
SLIDERS = ("map.big.xr", "map.big.yr")


def is_large(n_points: int) -> bool:
    """Whether a map of this many points is drawn as a density image."""
    return n_points > density.threshold()


def _event_key(event: Any) -> tuple[str, dict] | None:
    """(canonical JSON, selection dict) of a plotly_chart selection event, None when it selects nothing."""
    if event is None:
        return None
    sel = event.get("selection", event) if isinstance(event, dict) else getattr(event, "selection", None)
    if sel is None:
        return None
    get = sel.get if isinstance(sel, dict) else (lambda k, d=None: getattr(sel, k, d))
    out = {"lasso": list(get("lasso", []) or []), "box": list(get("box", []) or []),
           "points": [p.get("customdata") for p in (get("points", []) or []) if isinstance(p, dict)]}
    if not (out["lasso"] or out["box"] or out["points"]):
        return None
    return json.dumps(out, sort_keys=True, default=str), out


def _rows(kept: dict, x: np.ndarray, y: np.ndarray, shown: np.ndarray, n_rows: int) -> np.ndarray:
    """Row positions under the kept shapes (every shown row, not only the drawn ones) plus clicked points."""
    sel = {"lasso": kept["lasso"], "box": kept["box"]}
    rows = lasso.rows_in_selection(sel, np.column_stack([x, y]), rows=shown)
    if kept["points"]:
        clicked = curation.selection_rows({"selection": {"points": [{"customdata": c} for c in kept["points"]]}},
                                          n_rows)
        rows = np.union1d(rows, clicked[np.isin(clicked, shown)])
    return rows.astype(np.int64)


@st.cache_resource(max_entries=6, show_spinner="Drawing the density image…")
def _base(_fig: Any, fig_token: int, window: tuple[float, float, float, float]) -> dict:
    """The figure without the selection: density image of every point in the window, a sample as points, the map's
    layout (legend, colour bar). Keyed by the map figure's identity (cached by the page) and the window."""
    tr = _fig.data[0]
    x, y = np.asarray(tr.x, dtype=np.float64), np.asarray(tr.y, dtype=np.float64)
    rows = np.asarray(tr.customdata)
    colour = np.asarray(tr.marker.color)
    scale = [(float(p), str(c)) for p, c in tr.marker.colorscale]
    cmin, cmax = float(tr.marker.cmin), float(tr.marker.cmax)
    win = density.Window(*window)
    pix = density.pixel_index(x, y, win, WIDTH, HEIGHT)
    if np.issubdtype(colour.dtype, np.integer):  # categorical codes 0..k-1 (cmin = -0.5, cmax = k - 0.5)
        k = int(round(cmax + 0.5))
        count, major = density.majority_image(pix, colour, k, WIDTH, HEIGHT)
        rgba = density.shade_mean(count, np.where(major >= 0, major, np.nan), scale, cmin, cmax)
    else:
        count, mean = density.mean_image(pix, colour, WIDTH, HEIGHT)
        rgba = density.shade_mean(count, mean, scale, cmin, cmax)
    inside = np.flatnonzero(pix >= 0)
    pick = inside if len(inside) <= SAMPLE else np.sort(
        np.random.default_rng(0).choice(inside, SAMPLE, replace=False))
    marker = tr.marker.to_plotly_json()
    marker.update(color=colour[pick], size=3, opacity=0.55)
    sample = dict(type="scattergl", x=x[pick].astype(np.float32), y=y[pick].astype(np.float32), mode="markers",
                  customdata=rows[pick].astype(np.int32), marker=marker, showlegend=False, name="sample",
                  hovertemplate=tr.hovertemplate, selected=dict(marker=dict(opacity=1.0)),
                  unselected=dict(marker=dict(opacity=0.55)))
    layout = _fig.layout.to_plotly_json()
    layout["xaxis"] = {**layout.get("xaxis", {}), "range": [win.x0, win.x1], "autorange": False}
    layout["yaxis"] = {**layout.get("yaxis", {}), "range": [win.y0, win.y1], "autorange": False}
    layout["images"] = [dict(source=density.png_data_uri(rgba), xref="x", yref="y", x=win.x0, y=win.y1,
                             sizex=win.x1 - win.x0, sizey=win.y1 - win.y0, sizing="stretch", layer="below",
                             xanchor="left", yanchor="top")]
    layout["meta"] = {**(layout.get("meta") or {}), "density": True, "points": int(len(x)),
                      "in_window": int(len(inside)), "sample": int(len(pick))}
    return {"data": [sample], "layout": layout}


def _outline(kept: dict) -> list[dict]:
    """The kept lasso polygons and boxes as layout shapes (dotted outlines)."""
    line = dict(color="#222222", width=1.5, dash="dot")
    shapes = []
    for poly in kept["lasso"]:
        xs, ys = poly.get("x") or [], poly.get("y") or []
        if len(xs) >= 3:
            path = "M" + "L".join(f"{a},{b}" for a, b in zip(xs, ys)) + "Z"
            shapes.append(dict(type="path", path=path, xref="x", yref="y", line=line, layer="above"))
    for box in kept["box"]:
        xs, ys = box.get("x") or [], box.get("y") or []
        if len(xs) >= 2 and len(ys) >= 2:
            shapes.append(dict(type="rect", x0=min(xs), x1=max(xs), y0=min(ys), y1=max(ys), xref="x", yref="y",
                               line=line, layer="above"))
    return shapes


def _clear() -> None:
    state = st.session_state.get(SEL, {})
    st.session_state[SEL] = {**state, "shapes": None, "gen": state.get("gen", 0) + 1, "native": None,
                             "reset": state.get("reset", 0) + 1}  # a changed figure: the chart drops its lasso


def _zoom_to(x0: float, x1: float, y0: float, y1: float) -> None:
    st.session_state[SLIDERS[0]] = (x0, x1)
    st.session_state[SLIDERS[1]] = (y0, y1)


def _whole() -> None:
    for k in SLIDERS:
        st.session_state.pop(k, None)


def draw(fig: Any, shown: np.ndarray, n_rows: int, *, key: str = "map.plot") -> np.ndarray:
    """Draw the map `fig` (the page's one-trace figure of the `shown` rows) as a density image with a sample and
    the current selection; returns the selected row positions (sorted int64), every row under the shapes."""
    tr = fig.data[0]
    x, y = np.asarray(tr.x, dtype=np.float64), np.asarray(tr.y, dtype=np.float64)
    state = st.session_state.setdefault(SEL, {"event": None, "shapes": None, "gen": 0})
    got = _event_key(st.session_state.get(key))
    fresh = got is not None and got[0] != state.get("event")  # a new lasso, box or click (not the one consumed)
    if fresh:
        state = {**state, "event": got[0], "shapes": got[1], "gen": state.get("gen", 0) + 1, "native": None}
        st.session_state[SEL] = state
    kept = state.get("shapes")
    rows = _rows(kept, x, y, shown, n_rows) if kept else np.zeros(0, dtype=np.int64)
    at = np.searchsorted(shown, rows)  # rows are among the shown ones (both sorted): their places in x, y

    full = density.window_of(x, y)
    default = fig.layout.xaxis.range, fig.layout.yaxis.range  # the page's initial view (outliers trimmed)
    with st.expander("View window (zoom)", expanded=False):
        st.caption("Zooming inside the chart only enlarges the image: pick a window here to redraw it at full "
                   "resolution, with a new sample of the points inside it.")
        step_x, step_y = (full.x1 - full.x0) / 200, (full.y1 - full.y0) / 200
        for k, (lo, hi), start in ((SLIDERS[0], (full.x0, full.x1), default[0]),
                                   (SLIDERS[1], (full.y0, full.y1), default[1])):
            a, b = st.session_state.get(k) or start or (lo, hi)  # kept within the data (filters move it)
            st.session_state[k] = (min(max(float(a), lo), hi), max(min(float(b), hi), lo))
        xr = st.slider("x range", full.x0, full.x1, step=step_x, key=SLIDERS[0], format="%.2f")
        yr = st.slider("y range", full.y0, full.y1, step=step_y, key=SLIDERS[1], format="%.2f")
        c1, c2, _ = st.columns([1, 1, 2])
        if len(rows):
            sx, sy = x[at], y[at]
            px, py = max(np.ptp(sx) * 0.05, step_x), max(np.ptp(sy) * 0.05, step_y)
            c1.button("Zoom to the selection", key="map.big.zoom", icon=":material/zoom_in:", on_click=_zoom_to,
                      args=(max(full.x0, float(sx.min() - px)), min(full.x1, float(sx.max() + px)),
                            max(full.y0, float(sy.min() - py)), min(full.y1, float(sy.max() + py))))
        c2.button("Whole map", key="map.big.whole", icon=":material/zoom_out_map:", on_click=_whole)
    if xr[1] <= xr[0] or yr[1] <= yr[0]:
        xr, yr = (full.x0, full.x1), (full.y0, full.y1)
    colours = np.asarray(tr.marker.color)
    digest = hashlib.blake2b(np.ascontiguousarray(shown).tobytes(), digest_size=16)
    digest.update(np.ascontiguousarray(colours).tobytes())
    token = hash((id(fig), str(fig.layout.meta), digest.hexdigest()))  # what the image shows, ~10 ms at 1M rows
    window = (float(xr[0]), float(xr[1]), float(yr[0]), float(yr[1]))
    base = _base(fig, token, window)  # (ids of freed figures recur)

    # Does the chart in the browser show the selection itself? Yes for a lasso (box, click) drawn on the figure sent
    # last, when that figure drew no overlay: it is sent again unchanged. Once the figure changes, never again.
    sig = [token, window, state.get("reset", 0)]
    if fresh and not state.get("overlay"):
        state["native"] = sig
    native = bool(kept) and state.get("native") == sig and got is not None and got[0] == state.get("event")
    if not native:
        state["native"] = None
    state["overlay"] = bool(kept) and not native
    data = list(base["data"])
    if state["overlay"] and len(rows):
        where = at
        if len(where) > SELECTED_DRAWN:
            where = np.sort(np.random.default_rng(1).choice(where, SELECTED_DRAWN, replace=False))
        data.append(dict(type="scattergl", x=x[where].astype(np.float32), y=y[where].astype(np.float32),
                         mode="markers", customdata=shown[where].astype(np.int32), name="selection",
                         marker=dict(color="#111111", size=3, opacity=0.8), showlegend=False,
                         hovertemplate="row %{customdata} (selected)<extra></extra>"))
    meta = {**base["layout"]["meta"], "reset": state.get("reset", 0)}
    if state["overlay"]:
        meta.update(selection=state.get("gen", 0), selected=int(len(rows)))
    layout = {**base["layout"], "shapes": _outline(kept) if state["overlay"] else [], "meta": meta}
    st.caption(f"Density image of {meta['in_window']:,} points in the window (each pixel: "
               f"{'mean value' if meta.get('colour') == 'value' else 'majority'}), {meta['sample']:,} drawn as "
               "points · a lasso or box selects every row under it, drawn or not")
    st.plotly_chart({"data": data, "layout": layout}, key=key, on_select="rerun",
                    selection_mode=("points", "box", "lasso"), config={"scrollZoom": True, "displaylogo": False})
    if kept:
        st.button("Clear the selection", key="map.big.clear", icon=":material/deselect:", on_click=_clear)
    return rows
