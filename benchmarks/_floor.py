"""The floor of the interactive benchmarks: a minimal Streamlit page with the Map page's own figure.

`bench_map.py` (browser round trips) and `bench_server.py` (server time per rerun) both time the same
interactions against this page, so Winnow's figures stand beside what Streamlit and plotly cost by themselves.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLOOR_APP = '''
import json, os
import pandas as pd
import plotly.io as pio
import streamlit as st

st.set_page_config(layout="wide")

@st.cache_resource
def figures():
    spec = json.load(open(os.environ["FLOOR_FIGURE"]))
    texts = json.load(open(os.environ["FLOOR_TEXTS"]))
    return {name: pio.from_json(json.dumps(s)) for name, s in spec.items()}, texts

figs, texts = figures()
colour = st.radio("Colour by", ["value", "label"], horizontal=True, key="colour")
event = st.plotly_chart(figs[colour], key="plot", on_select="rerun", selection_mode=("points", "box", "lasso"))
rows = sorted({int(p["customdata"]) for p in event["selection"]["points"]})
if rows:
    st.subheader(f"Selection: {len(rows):,} rows")
    shown = rows[:1000]
    st.dataframe(pd.DataFrame({"row": shown, "text": [texts[i] for i in shown]}), hide_index=True)
'''



def _chart(at):
    charts = at.get("plotly_chart")
    if not charts:
        raise RuntimeError("no plotly chart on the page: " + "; ".join(str(e.value) for e in at.exception))
    return charts[0].proto



def floor_files(at, tmp: Path, ws_path: Path) -> dict[str, str]:
    """The Map page's figure (value and label colourings) and the texts, for the floor page."""
    from core import data
    from core.workspace import Workspace

    ws = Workspace(ws_path)
    ds_id = int(ws.get_setting("active_dataset"))
    texts = [str(t) for t in data.open_dataset(ws, f"ws:{ds_id}").ds["text"]]
    specs = {}
    for colour in ("label", "value"):
        at.radio(key="map.colour").set_value(colour).run()
        specs[colour] = json.loads(_chart(at).spec)
    (tmp / "figure.json").write_text(json.dumps(specs))
    (tmp / "texts.json").write_text(json.dumps(texts))
    (tmp / "floor_app.py").write_text(FLOOR_APP)
    return {"FLOOR_FIGURE": str(tmp / "figure.json"), "FLOOR_TEXTS": str(tmp / "texts.json")}


def floor_page(ws_path: Path, dest: Path) -> dict[str, str]:
    """Write the floor page and the Map's figure of this workspace into `dest`; returns its environment."""
    from streamlit.testing.v1 import AppTest

    old = os.environ.get("WINNOW_HOME")
    os.environ["WINNOW_HOME"] = str(ws_path)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.run()
        at.switch_page("pages/3_Map.py").run()
        return floor_files(at, dest, ws_path)
    finally:
        if old is None:
            os.environ.pop("WINNOW_HOME", None)
        else:
            os.environ["WINNOW_HOME"] = old
