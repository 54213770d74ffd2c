"""Map: every row as a point (UMAP of the embeddings), coloured by value, cluster, label, prediction or decision.

Lasso or box-select points, see them as a table, and remove / keep / clear them with a reason. One Scattergl trace
whose `customdata` is the row position (DESIGN.md: a trace per label would make selections ambiguous).
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
import streamlit as st

import ui
import ui_density
from core import curation, decisions
from core.errors import WinnowError
from core.valuation import significance

ws = ui.workspace()
WS = str(ws.path)
st.title("Map")

TABLE_ROWS = 1_000  # rows of the selection table (a 38k-row lasso would send every text to the browser)
DECISION_COLOURS = {"": "#c7c7c7", "keep": "#2ca02c", "relabel": "#ff7f0e", "remove": "#d62728"}
# red (harmful) .. light grey (0) .. blue (helpful): a white middle would vanish on the light background
DIVERGING = [(0.0, "#b2182b"), (0.25, "#ef8a62"), (0.5, "#d0d0d0"), (0.75, "#67a9cf"), (1.0, "#2166ac")]
PALETTE = pc.qualitative.Plotly + pc.qualitative.Dark24 + pc.qualitative.Light24  # 58 "#rrggbb" colours


LEGEND_ROWS = 30  # rows per column of a categorical legend


def _categorical(codes: np.ndarray, names: list[str], colours: list[str], title: str) -> tuple[dict, list[dict]]:
    """(marker, legend annotations) colouring integer codes 0..k-1: a categorical legend (a swatch and a name per
    category, in columns of LEGEND_ROWS beside the map) on the one trace; names are escaped (plotly renders HTML)."""
    k = max(len(names), 1)
    scale = []
    for i in range(k):
        c = colours[i % len(colours)]
        scale += [(i / k, c), ((i + 1) / k, c)]
    marker = dict(color=codes, colorscale=scale, cmin=-0.5, cmax=k - 0.5, showscale=False)
    n_cols = -(-len(names) // LEGEND_ROWS)
    dy = min(0.045, 0.95 / max(min(len(names), LEGEND_ROWS), 1))
    notes = [dict(text=f"<b>{html.escape(title)}</b>", x=1.01, y=1.0, xref="paper", yref="paper", xanchor="left",
                  yanchor="top", showarrow=False, font=dict(size=12))]
    for i, name in enumerate(names):
        col, row = divmod(i, LEGEND_ROWS)
        short = name if len(name) <= 26 else name[:25] + "…"
        notes.append(dict(text=f'<span style="color:{colours[i % len(colours)]}">●</span> {html.escape(short)}',
                          x=1.01 + 0.16 * col, y=1.0 - dy * (row + 1.2), xref="paper", yref="paper",
                          xanchor="left", yanchor="top", showarrow=False, font=dict(size=11)))
    return marker, notes if n_cols <= 3 else notes[:1 + 3 * LEGEND_ROWS] + [
        dict(text=f"… and {len(names) - 3 * LEGEND_ROWS} more", x=1.01, y=0.0, xref="paper", yref="paper",
             xanchor="left", yanchor="bottom", showarrow=False, font=dict(size=11))]


# Above ui.HOVER_TEXT_MAX points the hover shows no text: every per-point string would be serialised on every rerun
# and sent back with each selected point (the selection table shows the texts, looked up on the server).


@st.cache_resource(max_entries=12, show_spinner=False)
def _figure(ws_path: str, ds_id: int, emb_id: int, proj_id: int, values_id: int | None, clusters_id: int | None,
            preds_ready: bool, colour: str, filters: tuple, decision_version: int, mid: float
            ) -> tuple[go.Figure, np.ndarray]:
    """(figure, row positions shown), cached by what it depends on: the runs, the colour, the filters and, only when
    the colour or a filter reads decisions, their version. Shared across sessions: never mutate the result."""
    inp = ui.map_inputs(ws_path, ds_id, emb_id, proj_id, values_id, clusters_id, preds_ready)
    decisions = ui.decision_column(ds_id, decision_version) if decision_version >= 0 else None
    pos = _shown(inp, filters, decisions)
    n_all = len(inp["x"])
    legend: list[dict] = []
    if colour == "value":
        v = np.nan_to_num(inp["value"][pos], nan=mid)
        spread = float(np.quantile(np.abs(v - mid), 0.98)) if len(v) else 1.0
        spread = spread if spread > 0 else 1.0
        marker = dict(color=v.astype(np.float32), colorscale=DIVERGING, cmid=mid, cmin=mid - spread,
                      cmax=mid + spread, showscale=True, colorbar=dict(title=dict(text="value"), len=0.9,
                                                                        exponentformat="e"))
    elif colour == "significance":  # harmful only when the whole 95 % interval is below 0
        va = ui.values_arrays(ws_path, ds_id, values_id)
        verdict = significance.classify(va["value"], va["stderr"], va["counts"])
        names = list(significance.VERDICTS)
        codes = pd.Categorical(verdict[pos], categories=names).codes.astype(np.int8)
        marker, legend = _categorical(np.maximum(codes, 0), names, [significance.COLOURS[n] for n in names],
                                      "significance")
    elif colour in ("label", "predicted label"):
        names = sorted(set(inp["label"]))
        arr = inp["label"] if colour == "label" else inp["pred"]
        codes = pd.Categorical(arr[pos], categories=names).codes.astype(np.int32)
        marker, legend = _categorical(np.maximum(codes, 0), names, PALETTE, colour)
    elif colour == "cluster":
        cl = inp["cluster"][pos]
        ids = sorted(set(inp["cluster"].tolist()))
        codes = np.searchsorted(np.asarray(ids), cl).astype(np.int32)
        named = ui.cluster_names(ws_path, clusters_id)
        marker, legend = _categorical(codes, [("none" if c < 0 else f"{c}: {named[c]}" if c in named else str(c))
                                              for c in ids], PALETTE, "cluster")
    else:  # decision
        names = ["", "keep", "relabel", "remove"]
        codes = np.maximum(pd.Categorical(decisions[pos], categories=names).codes, 0).astype(np.int8)
        marker, legend = _categorical(codes, ["none", "keep", "relabel", "remove"], list(DECISION_COLOURS.values()),
                                      "decision")
    marker.update(size=4 if n_all > 5000 else 7, opacity=0.85, line=dict(width=0))
    if inp["hover"] is not None:  # small maps (ui.HOVER_TEXT_MAX)
        hover = inp["hover"]
        extra = dict(text=[hover[i] for i in pos], hovertemplate="%{text}<extra></extra>")
    else:  # numbers only: what the point is, not what it says (click it: the table below shows its text)
        what = {"value": "value %{marker.color:+.3g}", "decision": "", "label": "", "predicted label": "",
                "cluster": "", "significance": ""}[colour]
        extra = dict(hovertemplate="row %{customdata}" + (" · " + what if what else "") +
                     "<br>click or lasso to read it<extra></extra>")
    fig = go.Figure(go.Scattergl(
        x=inp["x"][pos], y=inp["y"][pos], mode="markers", marker=marker,
        customdata=pos.astype(np.int32),  # one integer per point: the row position
        showlegend=False, selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.25)),
        **extra))
    axis = dict(showticklabels=False, showgrid=False, zeroline=False, title=None)
    n_cols = max(1, -(-(len(legend) - 1) // LEGEND_ROWS)) if legend else 0
    fig.update_layout(dragmode="lasso", height=640, margin=dict(l=0, r=min(n_cols, 3) * 165, t=10, b=0),
                      uirevision="map", annotations=legend, meta=dict(colour=colour),
                      hovermode="closest", plot_bgcolor="#fafafa", xaxis=dict(axis, range=_view(inp["x"])),
                      yaxis=dict(axis, range=_view(inp["y"])), hoverlabel=dict(align="left"))
    pos.setflags(write=False)
    return fig, pos


def _shown(inp: dict, filters: tuple, decisions: np.ndarray | None) -> np.ndarray:
    """Row positions the filters keep: filters = (value range or None, labels, clusters, hide removed)."""
    rng, labels, clusters, hide_removed = filters
    mask = np.isfinite(inp["x"])  # rows without coordinates (not in a preliminary sample's map) are not drawn
    if rng is not None:
        mask &= (inp["value"] >= rng[0]) & (inp["value"] <= rng[1])
    if labels:
        mask &= np.isin(inp["label"], list(labels))
    if clusters:
        mask &= np.isin(inp["cluster"], list(clusters))
    if hide_removed and decisions is not None:
        mask &= decisions != "remove"
    return np.flatnonzero(mask)


def _view(v: np.ndarray) -> list[float] | None:
    """The initial axis range: the central 99.8 % of the points when a few far outliers would squeeze the rest
    into a corner (double-click the map to see every point); None (autorange) otherwise."""
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    qlo, qhi = (float(q) for q in np.nanquantile(v, [0.001, 0.999]))
    if len(v) < 1000 or (hi - lo) < 1.5 * (qhi - qlo):
        return None
    pad = 0.08 * (qhi - qlo)
    return [qlo - pad, qhi + pad]


def _decide(ds_id: int, rows: np.ndarray, action: str, source: str, reason_key: str) -> None:
    """A decision button's callback: recorded before the fragment reruns, so that one run (the fragment's, which
    also redraws the sidebar's counts) shows the result."""
    uids = ui.dataset_columns(WS, ds_id)["uid"]
    reason = str(st.session_state.get(reason_key) or "")
    try:
        decisions.record(ws, ds_id, [uids[i] for i in rows], action, reason=reason, source=source)
    except WinnowError as e:  # (a callback runs outside the page's guard)
        st.session_state["map.error"] = str(e)
        return
    verb = {"remove": "Removed", "keep": "Kept (pinned)", "clear": "Cleared the decisions of"}[action]
    st.session_state["map.flash"] = (f"{verb} {len(rows):,} rows", reason)


@st.fragment
def map_view(ds_id: int, emb_id: int, proj_id: int, values_id: int | None, clusters_id: int | None,
             preds_ready: bool, mid: float) -> None:
    """The map and the selection table: a lasso, a box, a colour or a filter reruns this fragment only."""
    # Two containers first: the panel's fragment id depends on where it is called, so it is called at a place that
    # does not move when the map above grows or shrinks (a caption, the rule buttons, the density map's buttons);
    # a fragment whose id changed could not redraw the sidebar's counts.
    body, below = st.container(), st.container()
    with body:
        rows, drawn_version = _map(ds_id, emb_id, proj_id, values_id, clusters_id, preds_ready, mid)
    # What the panel needs from this run, kept for its own runs: the selected rows, and the decision version the
    # figure was drawn at when its colour or filters read decisions (else None: a decision leaves it as is).
    st.session_state["map.selected"] = rows
    st.session_state["map.drawn_version"] = drawn_version
    with below:
        selection_panel(ds_id, emb_id, proj_id, values_id, clusters_id, preds_ready)


def _map(ds_id: int, emb_id: int, proj_id: int, values_id: int | None, clusters_id: int | None, preds_ready: bool,
         mid: float) -> tuple[np.ndarray, int | None]:
    """The colour and filter controls, the chart and the rule buttons: (the selected rows, the decision version the
    figure shows, or None when it shows no decisions)."""
    inp = ui.map_inputs(WS, ds_id, emb_id, proj_id, values_id, clusters_id, preds_ready)
    cols = ui.dataset_columns(WS, ds_id)
    uids = cols["uid"]
    n = len(uids)
    state = ui.decision_state(ds_id)
    options = (["value", "significance"] if inp["value"] is not None else []) \
        + (["cluster"] if inp["cluster"] is not None else []) \
        + ["label"] + (["predicted label"] if inp["pred"] is not None else []) + ["decision"]
    top = st.columns([3, 2])
    colour = top[0].radio("Colour by", options, horizontal=True, key="map.colour")
    if colour == "significance":
        st.caption(" · ".join(f"{name}: {text}" for name, text in significance.LEGEND.items()))
    hide_removed = top[1].checkbox("Hide removed rows", key="map.hide_removed")

    rng = None
    with st.expander("Filters", expanded=False):
        f1, f2, f3 = st.columns(3)
        if inp["value"] is not None:
            lo, hi = float(np.nanmin(inp["value"])), float(np.nanmax(inp["value"]))
            if hi > lo:
                step = float(f"{(hi - lo) / 100:.2g}") or (hi - lo) / 100  # about 100 positions on any scale
                got = f1.slider("Value range", lo, hi, (lo, hi), step=step, key="map.value_range", format="%.2e"
                                if hi - lo < 0.01 else "%.4f", help="values outside the range are hidden")
                rng = tuple(got) if tuple(got) != (lo, hi) else None
        classes = sorted(set(inp["label"]))
        pick = f2.multiselect("Labels", classes, key="map.labels", placeholder="all labels")
        pick_c: list = []
        if inp["cluster"] is not None:
            ids = sorted(set(inp["cluster"].tolist()))
            pick_c = f3.multiselect("Clusters", ids, key="map.clusters", placeholder="all clusters")
    filters = (rng, tuple(pick), tuple(pick_c), bool(hide_removed))
    needs_decisions = colour == "decision" or hide_removed
    fig, shown = _figure(WS, ds_id, emb_id, proj_id, values_id, clusters_id, preds_ready, colour, filters,
                         state.version if needs_decisions else -1, mid)
    n_shown = len(shown)
    st.caption(f"{n_shown:,} of {n:,} points shown · drag a lasso (or pick the box in the toolbar) to select"
               + (" · hover shows the row; the table below shows its text" if inp["hover"] is None else ""))
    if ui_density.is_large(n_shown):  # a density image; lassos resolved on the server against every row
        rows = ui_density.draw(fig, shown, n, key="map.plot")
    else:
        event = st.plotly_chart(fig, key="map.plot", on_select="rerun", selection_mode=("points", "box", "lasso"),
                                config={"scrollZoom": True, "displaylogo": False})
        rows = curation.selection_rows(event, n)

    if n_shown < n:
        with st.expander(f"Decide on all {n_shown:,} points shown by the filters"):
            st.text_input("Reason", key="map.rule_reason", placeholder="e.g. value below -0.01 in 'neutral'")
            r1, r2, _ = st.columns([1, 1, 3])
            r1.button(f"Remove {n_shown:,} shown", key="map.rule_remove", disabled=n_shown == 0, on_click=_decide,
                      args=(ds_id, shown, "remove", "rule", "map.rule_reason"))
            r2.button(f"Keep {n_shown:,} shown", key="map.rule_keep", disabled=n_shown == 0, on_click=_decide,
                      args=(ds_id, shown, "keep", "rule", "map.rule_reason"))

    return rows, state.version if needs_decisions else None


@st.fragment(key="map.panel")
def selection_panel(ds_id: int, emb_id: int, proj_id: int, values_id: int | None, clusters_id: int | None,
                    preds_ready: bool) -> None:
    """The sidebar's decision counts, the last decision's message, the selection table and its buttons.

    A fragment inside the map's: Remove, Keep, Clear and the sidebar's Undo rerun this panel only, so a run after a
    decision does not draw the chart again, and Streamlit neither deep-copies nor re-serialises a standing lasso's
    selection (every selected point's values) in it. When the figure shows decisions (colour by decision, hide
    removed rows) a decision redraws the whole page instead (a new figure, as before)."""
    drawn = st.session_state.get("map.drawn_version")
    if drawn is not None and ui.decision_state(ds_id).version != drawn:
        st.rerun(scope="app")
    ui.sidebar_decisions_in_fragment(ds_id)  # the counts and Undo, updated by this run (no whole-app rerun)
    if (error := st.session_state.pop("map.error", None)) is not None:
        st.error(ui.plain(error), icon=":material/error:")
    if (flash := st.session_state.pop("map.flash", None)) is not None:
        st.success(flash[0], icon=":material/check_circle:")
        if flash[1]:
            st.text(f"reason: {flash[1]}")
        ui.toast_undo(flash[0])
    rows = st.session_state.get("map.selected")
    if rows is None or len(rows) == 0:
        st.info("Select points on the map (lasso or box) to see them here and decide on them.",
                icon=":material/gesture_select:")
        return
    inp = ui.map_inputs(WS, ds_id, emb_id, proj_id, values_id, clusters_id, preds_ready)
    selection_table(ds_id, inp, rows, ui.decision_state(ds_id), values_id)


def selection_table(ds_id: int, inp: dict, rows: np.ndarray, state, values_id: int | None = None) -> None:
    """The selected rows (texts looked up here, from row positions) and the buttons that decide on all of them."""
    cols = ui.dataset_columns(WS, ds_id)
    uids, texts = cols["uid"], cols["text"]
    st.subheader(f"Selection: {len(rows):,} rows", anchor=False)
    if values_id is not None:  # how sure the values of the selected rows are (95 % intervals)
        va = ui.values_arrays(WS, ds_id, values_id)
        verdict = va["verdict"][rows]  # (significance.classify of every row, computed once per values run)
        n_of = {v: int((verdict == v).sum()) for v in significance.VERDICTS}
        st.caption(f"{n_of[significance.HARMFUL]:,} significantly harmful · {n_of[significance.UNCERTAIN]:,} "
                   f"uncertain · {n_of[significance.HELPFUL]:,} significantly helpful (95 % intervals of their "
                   "values; colour by significance to see them on the map)")
    key = inp["value"][rows] if inp["value"] is not None else np.zeros(len(rows))
    shown = rows[np.argsort(np.nan_to_num(key, nan=np.inf), kind="stable")]  # lowest value first, at every size
    if len(rows) > TABLE_ROWS:  # the decision applies to every selected row; the table shows the lowest values
        shown = shown[:TABLE_ROWS]
        st.caption(f"The table shows {TABLE_ROWS:,} of them (lowest values first); buttons act on all {len(rows):,}.")
    shown_uids = [uids[i] for i in shown]
    table = pd.DataFrame({
        "uid": shown_uids,
        "label": inp["label"][shown],
        "predicted": inp["pred"][shown] if inp["pred"] is not None else "",
        "value": inp["value"][shown] if inp["value"] is not None else np.nan,
        "decision": state.column(shown_uids),
        "text": [texts[i] for i in shown],
    })
    st.dataframe(table, hide_index=True, key="map.table", height=min(400, 38 + 35 * len(shown)),
                 column_config={"value": st.column_config.NumberColumn(format="%.4f"),
                                "text": st.column_config.TextColumn(width="large")})
    st.text_input("Reason (kept in the export manifest)", key="map.reason", placeholder="e.g. sarcasm labelled positive")
    b1, b2, b3, _ = st.columns([1, 1, 1, 3])
    b1.button(f"Remove {len(rows):,}", key="map.remove", type="primary", icon=":material/delete:",
              help="drop these rows from the curated set (undo: the sidebar's Undo, or Clear)", on_click=_decide,
              args=(ds_id, rows, "remove", "lasso", "map.reason"))
    b2.button(f"Keep {len(rows):,}", key="map.keep", icon=":material/push_pin:",
              help="pin these rows: selection always keeps them", on_click=_decide,
              args=(ds_id, rows, "keep", "lasso", "map.reason"))
    b3.button("Clear", key="map.clear", icon=":material/undo:", help="forget the decisions on these rows",
              on_click=_decide, args=(ds_id, rows, "clear", "lasso", "map.reason"))


with ui.guard():
    rec, ds = ui.active()
    emb = ui.active_embedding(rec.id)
    proj = ui.latest_projection(rec.id, emb.id) if emb is not None else None
    job = ui.current_job("project", rec.id)
    if proj is None:
        embed_job = ui.current_job("embed", rec.id)
        if embed_job is not None and embed_job.active:
            st.info("The texts are being embedded (started on the Data page); the map is drawn right after.")
            ui.job_panel(embed_job)
            st.stop()
        if job is None or not job.active:
            job = ui.ensure_map_job(rec.id, emb)
        st.info("Drawing the map: embedding the texts (cached) and projecting them to 2-D. This runs in the "
                "background; you may leave this page.", icon=":material/hourglass_top:")
        if job is not None:
            ui.job_panel(job)
            if not job.active and st.button("Draw the map again", key="map.retry", icon=":material/replay:"):
                ui.start_job("project", rec.id, ["project", f"ws:{rec.id}", *ui.embedding_args(emb)])
                st.rerun()
        st.stop()

    values_run, values_why = ui.values_choice(rec.id)
    clusters_run = ws.latest_run("clusters", dataset_id=rec.id)
    preds = ui.predictions(rec.id, emb.id)
    bits = [f"{rec.n_rows:,} points", f"map: {proj.method} ({proj.name})"]
    bits.append(f"values: {values_run.method}, run {values_run.number}" if values_run else "values: none yet")
    if clusters_run:
        bits.append(f"clusters: k={clusters_run.result.get('k', '?')} ({clusters_run.name})")
    if preds is None:
        bits.append("predicted labels: computing in the background")
    st.caption(" · ".join(bits))
    if values_run:  # (its own line: the reason may hold parentheses of its own)
        st.caption(f"Why valuation run {values_run.number}: {values_why}.")
    if clusters_run and clusters_run.result.get("k_reason"):
        st.caption(ui.plain(clusters_run.result["k_reason"]))
    ui.first_run_note(rec.id, values_run)
    if job is not None and job.active:
        ui.job_panel(job)

    with st.expander("Projection settings"):
        p = proj.params
        c1, c2, c3, c4 = st.columns(4)
        method = c1.selectbox("Method", ["auto", "umap", "pca"], key="map.method",
                              help="auto: PCA below 500 rows, else UMAP")
        nn = c2.number_input("UMAP neighbours", 2, 200, int(p.get("n_neighbors", 15)), key="map.n_neighbors")
        md = c3.number_input("UMAP min distance", 0.0, 1.0, float(p.get("min_dist", 0.1)), step=0.05,
                             key="map.min_dist")
        seed = c4.number_input("Seed", 0, 2**31 - 1, int(p.get("seed", 0) or 0), key="map.seed")
        if st.button("Recompute the map", key="map.recompute", icon=":material/refresh:",
                     disabled=job is not None and job.active):
            ui.start_job("project", rec.id, [
                "project", f"ws:{rec.id}", *ui.embedding_args(emb), "--method", method, "--n-neighbors", str(int(nn)),
                "--min-dist", str(float(md)), "--seed", str(int(seed))])
            st.rerun()

    mid = 0.5 if values_run is not None and values_run.method == "consensus" else 0.0
    map_view(rec.id, emb.id, proj.id, values_run.id if values_run else None,
             clusters_run.id if clusters_run else None, preds is not None, mid)
