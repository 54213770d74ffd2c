"""In a real browser: every page is reachable by its URL (the Data page at / and at /Data, on a fresh server and on
a warm one), and the Data page's loader warnings show the commands they name as code while quoted cells stay
literal (issue 17: "Messages that match what is shown").

Uses the helpers of tests/test_browser.py (Debian's chromium through Playwright, a 300-row demo workspace).
"""
from __future__ import annotations

import re

import pytest

from test_browser import ARTIFACTS, CHROMIUM, FLAGS, start_server, stop_server, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")]
playwright_api = pytest.importorskip("playwright.sync_api")

TITLES = {"Data": "Data", "Value": "Value", "Map": "Map", "Inspect": "Inspect", "Select": "Select",
          "Export": "Export"}


def _title(page) -> str:
    h1 = page.locator("h1").first
    h1.wait_for(timeout=60_000)
    return h1.inner_text().strip()


def test_data_is_reachable_by_url_on_a_fresh_and_a_warm_server(tmp_path):
    from demo_workspace import build_workspace

    build_workspace(tmp_path / "ws")
    proc, url = start_server(tmp_path / "ws", tmp_path / "streamlit.log")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(url + "/Data")  # the first visitor of a fresh server (Streamlit's v1 emulation)
            assert _title(page) == "Data"
            wait_idle(page)
            page.get_by_text("Rows per class").wait_for(timeout=60_000)
            assert page.get_by_text("Active valuation").count() == 1  # through app.py: the sidebar is there
            assert page.get_by_text("Page not found").count() == 0
            for path, title in TITLES.items():  # a warm server: st.navigation resolves each URL
                page.goto(f"{url}/{path}")
                assert _title(page) == title, path
                wait_idle(page)
                assert page.get_by_text("Page not found").count() == 0, path
            page.goto(url + "/Data")
            page.get_by_text("Rows per class").wait_for(timeout=60_000)
            wait_idle(page)
            assert page.get_by_text("Page not found").count() == 0
            page.goto(url + "/")
            assert _title(page) == "Data"
            wait_idle(page)
            browser.close()
    finally:
        stop_server(proc)


def test_loader_warnings_show_commands_as_code_and_cells_literally(tmp_path):
    from demo_workspace import build_workspace

    build_workspace(tmp_path / "ws")
    f = tmp_path / "dups.csv"  # a conflicting duplicate whose text carries Markdown: quoted in the warning
    f.write_text("text,label\n`tick` **bold** [l](http://x),pos\n`tick` **bold** [l](http://x),neg\n"
                 "good,pos\nbad,neg\nfine,pos\nawful,neg\n", encoding="utf-8")
    proc, url = start_server(tmp_path / "ws", tmp_path / "streamlit.log")
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1100})
            page.goto(url + "/")
            page.get_by_text("Rows per class").wait_for(timeout=60_000)
            wait_idle(page)
            page.get_by_text("Load data: the demo").click()
            page.get_by_role("tab", name="A path").click()
            box = page.get_by_placeholder("/data/train.csv")
            box.fill(str(f))
            page.keyboard.press("Enter")
            wait_idle(page)
            page.get_by_role("button", name="Load the path").click()
            warning = page.locator("[data-testid='stAlertContentWarning']").filter(has_text="conflicting labels")
            warning.wait_for(timeout=60_000)
            wait_idle(page)
            page.screenshot(path=str(ARTIFACTS / "1_data_loader_warnings.png"), full_page=True)
            text = warning.inner_text()
            code = [c.inner_text() for c in warning.locator("code").all()]
            assert "python -m core info" in code  # the command is code ...
            assert "`python -m core info`" not in text  # ... not a literal `python -m core info`
            assert "`tick` **bold** [l](http://x)" in text  # the quoted cell, verbatim
            assert warning.locator("a").count() == 0 and warning.locator("strong").count() == 0
            assert not [c for c in code if "tick" in c]  # the cell's backticks are not code
            assert re.search(r"2 text\(s\) have conflicting labels|1 text\(s\) have conflicting labels", text)
            browser.close()
    finally:
        stop_server(proc)
