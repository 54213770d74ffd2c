"""Data: load the demo, a file, a path or a workspace dataset; see its classes, lengths, duplicates and conflicts."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core import data

ws = ui.workspace()
st.title("Data")
st.caption("Load labelled text (a text column and a label column). Everything you load is kept in the workspace.")


def _opts(prefix: str) -> dict:
    c1, c2 = st.columns(2)
    text_col = c1.text_input("Text column (optional)", key=f"{prefix}.text_col", placeholder="found by name")
    label_col = c2.text_input("Label column (optional)", key=f"{prefix}.label_col", placeholder="found by name")
    skip = st.checkbox("Leave out CSV/TSV rows with more fields than the header", key=f"{prefix}.skip_bad_rows",
                       help="Off: such a row is an error naming it. On: it is left out, and a warning names it.")
    return {"text_col": text_col.strip() or None, "label_col": label_col.strip() or None, "skip_bad_rows": skip}


def _loaded(ds_id: int) -> None:
    st.session_state["data.loaded"] = ds_id
    st.rerun()


with st.expander("Load data: the demo, a file, a path, or a dataset already in the workspace", expanded=False,
                 icon=":material/upload_file:"):
    src_demo, src_file, src_path, src_ws = st.tabs(["Demo tweets", "Upload a file", "A path", "In this workspace"])
    with src_demo:
        st.text("38,158 tweets labelled positive / negative / neutral (bundled, offline).")
        limit = st.number_input("Rows (a stratified sample; 0 = all)", min_value=0, value=0, step=500,
                                key="data.demo_limit")
        if st.button("Load the demo", key="data.load_demo", type="primary"):
            with ui.guard():
                _loaded(ui.open_source("demo", limit=int(limit) or None))
    with src_file:
        up = st.file_uploader("CSV, TSV, JSON, JSONL or Parquet", key="data.upload",
                              type=["csv", "tsv", "json", "jsonl", "ndjson", "parquet", "gz"])
        opts = _opts("data.upload")
        if st.button("Load the file", key="data.load_upload", disabled=up is None, type="primary"):
            with ui.guard():
                name = Path(up.name).name or "upload.csv"
                dest = ws.path / "uploads" / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(up.getvalue())
                _loaded(ui.open_source(str(dest), **opts))
    with src_path:
        path = st.text_input("File or `datasets` folder on the server", key="data.path",
                             placeholder="/data/train.csv")
        opts = _opts("data.path")
        if st.button("Load the path", key="data.load_path", disabled=not path.strip(), type="primary"):
            with ui.guard():
                _loaded(ui.open_source(path.strip(), **opts))
    with src_ws:
        known = ws.datasets()
        if not known:
            st.text("No datasets yet.")
        else:
            labels = {d.id: f"{d.id}: {d.name} · {d.n_rows:,} rows · {len(d.classes)} classes" for d in known}
            pick = st.selectbox("Dataset", list(labels), format_func=labels.get, key="data.reopen")
            if st.button("Open", key="data.open", type="primary"):
                ws.set_setting("active_dataset", int(pick))
                _loaded(int(pick))

with ui.guard():
    rec, ds = ui.active()
    st.subheader("Active dataset", anchor=False)
    st.text(f"{rec.name} (dataset {rec.id})\nsource: {rec.source} · text column: {rec.text_col} · "
            f"label column: {rec.label_col}")
    if ui.active_values_run(rec.id) is None:  # the way to the first map, for a newcomer who starts here
        st.info("Next: **Compute values** on the Value page. On a large dataset it shows a first map from a "
                "stratified sample within about a minute, then values, maps and clusters every row in the "
                "background.", icon=":material/arrow_forward:")
        st.page_link("pages/2_Value.py", label="Go to Value", icon=":material/insights:")
    summary = ui.dataset_summary(str(ws.path), rec.id)
    c = st.columns(5)
    trunc = summary.get("truncated") or {}
    c[4].metric("Truncated texts", f"{trunc['rows']:,}" if trunc else "—",
                help=f"texts longer than the model's {trunc.get('window', '?')}-token window: embedding reads only "
                     "their beginning")
    c[0].metric("Rows", f"{summary['rows']:,}")
    c[1].metric("Classes", summary["n_classes"])
    c[2].metric("Duplicate texts", f"{summary['duplicates']['extra']:,}", help="extra copies of repeated texts")
    c[3].metric("Label conflicts", f"{summary['conflicts']['groups']:,}",
                help="texts that appear more than once with different labels")

    history = data.version_table(ws, rec.id)
    if len(history) > 1:
        with st.expander(f"Versions of this source ({len(history)}): decisions carry over to each new version",
                         icon=":material/history:"):
            st.dataframe(pd.DataFrame(history), hide_index=True, key="data.versions")
    # the warnings of the active dataset only: those of the load just made, else those recorded when it was loaded
    warns = list((st.session_state.get("data.warnings") or {}).get(rec.id, rec.meta.get("warnings") or []))
    if warns:  # escaped (they quote cells), with the commands they name shown as code
        st.warning(f"The loader has {len(warns)} warning(s) about this data:\n\n"
                   + "\n".join(f"- {ui.plain(w)}" for w in warns), icon=":material/warning:")

    left, right = st.columns(2)
    with left:
        classes = list(summary["classes"])
        fig = go.Figure(go.Bar(x=[html.escape(c) for c in classes], y=[summary["classes"][c] for c in classes],
                               marker_color="#4c78a8"))
        fig.update_layout(title="Rows per class", height=320, margin=dict(l=10, r=10, t=40, b=10),
                          xaxis_type="category")
        st.plotly_chart(fig, key="data.classes", config={"displayModeBar": False})
    with right:
        lengths = ui.text_lengths(str(ws.path), rec.id)
        fig = go.Figure(go.Histogram(x=lengths, nbinsx=50, marker_color="#72b7b2"))
        ls = summary["length"]["chars"]
        fig.update_layout(title=f"Text length (characters; median {ls['median']:.0f}, max {ls['max']:,})",
                          height=320, margin=dict(l=10, r=10, t=40, b=10), bargap=0.05)
        st.plotly_chart(fig, key="data.lengths", config={"displayModeBar": False})

    dups, conflicts = ui.duplicate_tables(str(ws.path), rec.id)
    t1, t2, t3 = st.tabs([f"Label conflicts ({len(conflicts):,})", f"Duplicates ({len(dups):,})", "Rows"])
    with t1:
        if conflicts.empty:
            st.text("No text appears with two different labels.")
        else:
            st.dataframe(conflicts, hide_index=True, key="data.conflicts")
    with t2:
        if dups.empty:
            st.text("No repeated texts.")
        else:
            st.dataframe(dups, hide_index=True, key="data.duplicates")
    with t3:
        cols = ui.dataset_columns(str(ws.path), rec.id)
        n = min(200, rec.n_rows)
        st.dataframe(pd.DataFrame({k: v[:n] for k, v in cols.items()}), hide_index=True, key="data.rows")
        st.caption(f"first {n:,} of {rec.n_rows:,} rows")

    st.subheader("Embeddings", anchor=False)
    embs = [e for e in ws.embeddings(rec.id) if not e.meta.get("preliminary")]
    job = ui.current_job("embed", rec.id)
    if job is not None and job.active:
        ui.job_panel(job)
    elif embs:
        e = embs[0]
        st.success(ui.plain(f"Embedded: {e.n_rows:,} × {e.dim} with {e.model}")
                   + (f" in {e.seconds:.0f} s" if e.seconds else ""), icon=":material/check_circle:")
        if ui.latest_projection(rec.id, e.id) is None:
            mj = ui.ensure_map_job(rec.id, e)  # the map is drawn in the background so it is ready when opened
            if mj is not None and mj.active:
                st.caption("Drawing the map in the background…")
    else:
        if job is not None:
            ui.job_panel(job)
        st.text("Valuation, the map and selection work on sentence embeddings of the texts (MiniLM, offline).")
        if st.button("Embed", key="data.embed", icon=":material/memory:",
                     help="runs `python -m core embed` in the background; you may leave this page"):
            ui.start_job("embed", rec.id, ["embed", f"ws:{rec.id}"])
            st.rerun()
