"""Nothing a user decided is lost: across a server restart, and with two tabs deciding at once."""
from __future__ import annotations

import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import ROOT


def _inspect() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/4_Inspect.py").run()
    assert not at.exception, at.exception
    return at


def _first_cards(at: AppTest, n: int) -> list[str]:
    return [k.removeprefix("inspect.remove.") for k in (b.key for b in at.button)
            if k and k.startswith("inspect.remove.")][:n]


def test_a_decision_survives_a_server_restart(demo_ws):
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    at = _inspect()
    [uid] = _first_cards(at, 1)
    at.button(key=f"inspect.remove.{uid}").click().run()
    assert not at.exception, at.exception
    # a restart: every cached resource (workspace handle, datasets) is gone, a new session starts
    st.cache_resource.clear()
    st.cache_data.clear()
    again = _inspect()
    assert ws.decisions(ds_id)[uid].action == "remove"
    assert uid not in _first_cards(again, 10)  # decided rows stay hidden for the new session
    assert any("1 removed so far" in c.value for c in again.caption)


def test_two_tabs_deciding_at_once_lose_nothing(demo_ws):
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    tab_a, tab_b = _inspect(), _inspect()  # both opened before either decides: tab B's view is stale
    first, second = _first_cards(tab_a, 2)
    tab_a.button(key=f"inspect.remove.{first}").click().run()
    tab_b.button(key=f"inspect.keep.{second}").click().run()  # B still shows `first`; it decides on another row
    assert not tab_a.exception and not tab_b.exception
    state = ws.decisions(ds_id)
    assert state[first].action == "remove" and state[second].action == "keep"
