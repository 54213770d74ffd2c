"""Winnow: curate fine-tuning data for text classifiers. Run with `streamlit run app.py`."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

import ui

HERE = Path(__file__).parent
st.set_page_config(page_title="Winnow", page_icon=str(HERE / "assets" / "logo.png"), layout="wide")
st.logo(str(HERE / "assets" / "logo.png"))

# The Data page is the start page, served at the root URL; /Data (as the other pages' /Map, /Value) leads to it too.
DATA = st.Page("pages/1_Data.py", title="Data", icon=":material/table:", default=True, url_path="start")


def _to_data() -> None:
    st.switch_page(DATA)


PAGES = [
    DATA,
    st.Page(_to_data, title="Data", url_path="Data", visibility="hidden"),
    st.Page("pages/2_Value.py", title="Value", icon=":material/insights:"),
    st.Page("pages/3_Map.py", title="Map", icon=":material/scatter_plot:"),
    st.Page("pages/4_Inspect.py", title="Inspect", icon=":material/search:"),
    st.Page("pages/5_Select.py", title="Select", icon=":material/filter_alt:"),
    st.Page("pages/6_Fine-tune.py", title="Fine-tune & compare", icon=":material/model_training:"),
    st.Page("pages/7_Export.py", title="Export", icon=":material/download:"),
]
nav = st.navigation(PAGES)
ui.follow_deep_link()  # a deep link on a fresh server arrives here through ui.workspace()
with ui.guard():
    ui.active_dataset_id()
ui.sidebar()
nav.run()
