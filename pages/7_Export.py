"""Export: the curated set (all rows minus removals) or a saved subset, as a file plus manifest.json."""
from __future__ import annotations

import re
import time

import pandas as pd
import streamlit as st

import ui
from core import export

ws = ui.workspace()
st.title("Export")


def _reset_path() -> None:
    st.session_state.pop("export.path", None)  # the default name follows the format and the subset


with ui.guard():
    rec, ds = ui.active()
    c1, c2 = st.columns([1, 2])
    fmt = c1.selectbox("Format", list(export.FORMATS), key="export.format", on_change=_reset_path,
                       help="csv, jsonl, parquet, or a `datasets` folder (save_to_disk)")
    subsets = ws.runs("selection", dataset_id=rec.id, status="done")
    what_options = ["Curated full set (all rows minus removals)"] + (["A saved subset"] if subsets else [])
    what = c2.radio("What to export", what_options, key="export.what", on_change=_reset_path)
    subset_id = None
    if what == "A saved subset":
        names = {r.id: f"subset {r.number}: {r.method}, {r.result.get('n', '?')} rows, "
                       f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(r.created))}"
                       + (f" — {r.params.get('note')}" if r.params.get("note") else "") for r in subsets}
        subset_id = st.selectbox("Subset", list(names), format_func=names.get, key="export.subset",
                                 on_change=_reset_path)
    elif not subsets:
        st.caption("No saved subsets yet (make one on the Select page).")

    stem = re.sub(r"[^\w.-]+", "_", rec.name.rsplit(".", 1)[0]).strip("_") or "dataset"
    stem = f"{stem}-curated" if subset_id is None else f"{stem}-subset{ws.run(subset_id).number}"
    manifest = export.preview_manifest(ws, rec.id, ds, fmt=fmt, subset_run_id=subset_id,
                                       file_name=stem + ("" if fmt == "datasets" else f".{fmt}"))
    m = st.columns(5)
    m[0].metric("Rows before", f"{manifest['rows_before']:,}")
    m[1].metric("Rows exported", f"{manifest['rows_after']:,}")
    m[2].metric("Removed by decision", f"{manifest['rows_removed_by_decision']:,}")
    m[3].metric("Left out by the subset", f"{manifest['rows_left_out_by_subset']:,}")
    m[4].metric("Relabelled", f"{manifest['rows_relabelled']:,}", help="exported rows written with their new label")
    st.caption("Every kept cell is written exactly as it was read (text stays text: 00501, NA and 1.0 are kept); "
               "relabelled rows get their new label, and the manifest lists old and new.")
    neutralise = False
    if fmt == "csv":
        neutralise = st.checkbox(
            "Neutralise spreadsheet formulas", key="export.neutralise", value=False,
            help="Cells that begin with = + - @ (or a tab or carriage return) can run as formulas when the CSV is "
                 "opened in a spreadsheet. This prefixes them with ' (OWASP's advice), which changes those cells; "
                 "off by default so the export stays exact.")
    if manifest["removals"]:
        with st.expander(f"Removed rows and why ({len(manifest['removals']):,})"):
            st.dataframe(pd.DataFrame(manifest["removals"]), hide_index=True, key="export.removals")
    with st.expander("Manifest preview (written beside the data file as FILE.manifest.json, e.g. curated.csv.manifest.json)", expanded=False):
        st.json(manifest, expanded=1)

    st.subheader("Download", anchor=False)
    st.download_button(
        "Download zip (data + manifest)", key="export.download", icon=":material/download:", type="primary",
        data=lambda: export.export_zip(ws, rec.id, ds, fmt=fmt, subset_run_id=subset_id, stem=stem,
                                       neutralise_formulas=neutralise),
        file_name=f"{stem}.zip", mime="application/zip", disabled=manifest["rows_after"] == 0, on_click="ignore")

    st.subheader("Write into the workspace's exports folder", anchor=False)
    exports = ws.path / "exports"
    st.caption(ui.plain(f"The app writes only into {exports} (a file name, not a path). To write anywhere else use the "
                        "CLI: `python -m core export DATA --out PATH`."))
    default = stem + ("" if fmt == "datasets" else f".{fmt}")
    st.session_state.setdefault("export.path", default)
    name = st.text_input("File name", key="export.path")
    if st.button("Write", key="export.write", icon=":material/save:", disabled=not name.strip()):
        out = export.app_target(ws, name, fmt)
        res = export.export_dataset(ws, rec.id, ds, fmt=fmt, out=out, subset_run_id=subset_id,
                                    neutralise_formulas=neutralise)
        st.session_state["export.written"] = (str(res.path), str(res.manifest_path), res.rows_after,
                                              (rec.id, name, fmt, subset_id))
    if (done := st.session_state.get("export.written")) is not None and done[3:] == ((rec.id, name, fmt, subset_id),):
        # (only for the target written: a new name, format, subset or dataset clears it)
        st.success(f"Wrote {done[2]:,} rows.", icon=":material/check_circle:")
        st.text(f"data:     {done[0]}\nmanifest: {done[1]}")
