"""In a real browser, from an empty workspace: the first Compute values shows a preliminary map of a sample, then
the map of every row replaces it without a reload.

A 600-row demo sample is the server's default dataset (WINNOW_DEFAULT_SOURCE) and the first run samples 250 rows
(WINNOW_FIRST_RUN_SAMPLE / _ABOVE) with the real MiniLM encoder. Skips when chromium or playwright is absent.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from test_browser import CHROMIUM, FLAGS, start_server, stop_server, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")]
playwright_api = pytest.importorskip("playwright.sync_api")

N, SAMPLE = 600, 250


def _points(page) -> int:
    return page.evaluate("() => { const g = document.querySelector('.js-plotly-plot');"
                         " return g && g._fullData && g._fullData.length ? g._fullData[0].x.length : -1; }")


def _wait_points(page, n: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _points(page) == n:
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"the map never showed {n} points (last: {_points(page)})")


def test_fresh_workspace_shows_a_preliminary_map_then_the_full_one(tmp_path):
    from core import data
    from core.workspace import Workspace

    src = tmp_path / "sample.jsonl"
    sample = data.open_dataset(Workspace(tmp_path / "scratch"), "demo", limit=N)
    pd.DataFrame({"text": sample.ds["text"], "label": sample.ds["label"]}).to_json(src, orient="records", lines=True)
    ws_path = tmp_path / "ws"  # empty: the app loads the default source on first start
    env = {"WINNOW_DEFAULT_SOURCE": str(src), "WINNOW_FIRST_RUN_SAMPLE": str(SAMPLE),
           "WINNOW_FIRST_RUN_ABOVE": "400"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        proc, url = start_server(ws_path, tmp_path / "streamlit.log")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.goto(url + "/Value")
            page.get_by_text("No valuation yet").wait_for(timeout=120_000)
            page.get_by_role("button", name="Compute values").click()
            try:  # hidden while the first run runs
                page.get_by_text("No valuation yet").wait_for(state="detached", timeout=60_000)
            except Exception:
                raise AssertionError(page.inner_text("body")[-3000:]) from None
            page.goto(url + "/Map")
            page.get_by_text(f"Preliminary: {SAMPLE:,} of {N:,} rows valued").wait_for(timeout=400_000)
            _wait_points(page, SAMPLE, 60)
            page.screenshot(path=str(tmp_path / "preliminary.png"))
            _wait_points(page, N, 600)  # redrawn by itself when every row is valued and mapped
            wait_idle(page)
            assert page.get_by_text("Preliminary:").count() == 0
            browser.close()
    finally:
        stop_server(proc)
        log = (tmp_path / "streamlit.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
    assert Path(ws_path).exists()
