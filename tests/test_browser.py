"""End to end in a real browser: lasso points on the map, remove them with a reason, export, check the manifest.

Drives Debian's chromium (/usr/bin/chromium) through Playwright against `streamlit run app.py` on a loopback port
with a temporary workspace (a 300-row demo sample with values and a map, see tests/demo_workspace.py). Saves a
screenshot of each page under tests/artifacts/. Skips when chromium or playwright is absent.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update"]

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")]
playwright_api = pytest.importorskip("playwright.sync_api")

from benchmarks import _server  # noqa: E402  (start and stop a server: shared with the browser benchmarks)


def start_server(ws_path: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free loopback port with WINNOW_HOME=ws_path; returns (process, base url)."""
    return _server.start("app.py", cwd=ROOT, env={"WINNOW_HOME": str(ws_path)}, log_path=log_path,
                         args=("--server.fileWatcherType", "none"), timeout=90)


def stop_server(proc: subprocess.Popen) -> None:
    _server.stop(proc)


IDLE_JS = ("() => { const app = document.querySelector(\"[data-testid='stApp']\");"
           " return !!app && app.getAttribute('data-test-script-state') === 'notRunning'"
           " && !document.querySelector(\"[data-testid='stStatusWidget']\"); }")


def wait_idle(page, timeout: float = 60.0) -> None:
    """Wait until the script run ends: the app root says `data-test-script-state="notRunning"` (the status widget
    is not a signal: the minimal toolbar hides it), twice in a row 200 ms apart."""
    page.wait_for_timeout(300)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if page.evaluate(IDLE_JS):
            page.wait_for_timeout(200)
            if page.evaluate(IDLE_JS):
                return
        page.wait_for_timeout(200)
    raise AssertionError("the app kept running for more than %.0f s" % timeout)


def open_map(page, url: str, timeout: float = 120_000) -> float:
    """Open the Map page; returns seconds until the points are drawn (the plot's drag layer and its WebGL canvas)."""
    t0 = time.perf_counter()
    page.goto(url + "/Map")
    page.locator(".nsewdrag").first.wait_for(state="visible", timeout=timeout)
    page.locator(".js-plotly-plot canvas").first.wait_for(state="attached", timeout=timeout)
    page.wait_for_function("() => { const g = document.querySelector('.js-plotly-plot');"
                           " return g && g._fullData && g._fullData.length === 1 && g._fullData[0].x.length > 0; }",
                           timeout=timeout)
    return time.perf_counter() - t0


def lasso(page, fraction: float = 0.3) -> None:
    """Drag a closed lasso (an octagon) around the middle of the plot with the mouse button held down."""
    box = page.locator(".nsewdrag").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    rx, ry = box["width"] * fraction / 2, box["height"] * fraction / 2
    import math

    pts = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in [i * math.pi / 4 for i in range(9)]]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for p in pts[1:]:
        page.mouse.move(*p, steps=6)
    page.mouse.up()


SELECTION_HEADING = re.compile(r"^Selection: [\d,]+ rows$")


def selection_heading(page) -> tuple:
    """Wait for the selection table's heading after a lasso or box; returns (its locator, the rows it counts)."""
    heading = page.get_by_text(SELECTION_HEADING)
    heading.wait_for(timeout=60_000)
    return heading, int(re.sub(r"\D", "", heading.inner_text()))


def remove_selection(page, n_selected: int) -> None:
    """Press the selection panel's Remove and wait until it says it removed the rows."""
    page.get_by_role("button", name=re.compile(rf"^Remove {n_selected:,}$")).click()
    page.get_by_text(re.compile(rf"^Removed {n_selected:,} rows")).wait_for(timeout=60_000)
    wait_idle(page)


def n_removed(ws, ds_id: int) -> int:
    return sum(d.action == "remove" for d in ws.decisions(ds_id).values())


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from demo_workspace import build_workspace

    root = tmp_path_factory.mktemp("browser")
    facts = build_workspace(root / "ws")
    proc, url = start_server(root / "ws", root / "streamlit.log")
    try:
        yield {"url": url, **facts, "root": root}
    finally:
        stop_server(proc)


@pytest.fixture
def page(app):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1300})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
        yield pg
        browser.close()
        assert not [e for e in errors if "alert" in e or "dialog" in e], errors


def test_lasso_remove_and_export(app, page):
    ws, url, ds_id = app["ws"], app["url"], app["dataset_id"]

    # A deep link on a fresh server (Streamlit's v1 emulation) still goes through app.py: sidebar and navigation.
    seconds = open_map(page, url)
    wait_idle(page)
    print(f"map of {len(app['uids'])} points drawn in {seconds:.1f} s")
    assert page.get_by_text("Active valuation").count() == 1
    assert page.get_by_text("Fine-tune & compare").count() >= 1  # app.py's titles, not the file names
    page.screenshot(path=str(ARTIFACTS / "3_map.png"), full_page=True)

    lasso(page)
    heading, n_selected = selection_heading(page)
    assert n_selected > 0
    wait_idle(page)
    page.get_by_label("Reason (kept in the export manifest)").fill("off-topic cluster (browser test)")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "3_map_selection.png"), full_page=True)
    page.get_by_role("button", name=re.compile(rf"^Remove {n_selected:,}$")).click()
    page.get_by_text(re.compile(rf"^Removed {n_selected:,} rows")).wait_for(timeout=60_000)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "3_map_removed.png"), full_page=True)

    removed = {u: d for u, d in ws.decisions(ds_id).items() if d.action == "remove"}
    assert len(removed) == n_selected
    assert {d.source for d in removed.values()} == {"lasso"}
    assert {d.reason for d in removed.values()} == {"off-topic cluster (browser test)"}

    page.goto(url + "/Inspect")
    page.get_by_text(re.compile(r"^page 1 of")).wait_for(timeout=60_000)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "4_inspect.png"), full_page=True)
    if app["hostile_uid"] not in removed:  # lowest value: the first card, shown verbatim in a code block
        page.locator("[data-testid='stCode']").first.wait_for(timeout=60_000)
        page.get_by_text("<script>alert(1)</script>", exact=False).first.wait_for(timeout=60_000)
        assert page.get_by_text("<script>alert(1)</script>", exact=False).count() >= 1
    assert page.locator("img[src*='example.com']").count() == 0  # the Markdown image is not rendered
    assert page.locator("a[href='http://x']").count() == 0  # nor the link
    page.screenshot(path=str(ARTIFACTS / "4_inspect.png"), full_page=True)

    page.goto(url + "/")
    page.get_by_text("Rows per class").wait_for(timeout=60_000)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "1_data.png"), full_page=True)

    out = ws.path / "exports" / "curated.csv"  # the app writes only into the workspace's exports folder
    page.goto(url + "/Export")
    path_box = page.get_by_label("File name")
    path_box.wait_for(timeout=60_000)
    wait_idle(page)
    path_box.fill(out.name)
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Write").click()
    page.get_by_text(re.compile(r"^Wrote [\d,]+ rows")).wait_for(timeout=60_000)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "7_export.png"), full_page=True)

    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert len(df) == len(app["uids"]) - n_selected
    assert not set(df["uid"]) & set(removed)
    manifest = json.loads(out.with_name("curated.csv.manifest.json").read_text())
    assert manifest["rows_removed_by_decision"] == n_selected
    listed = {r["uid"]: r for r in manifest["removals"]}
    assert set(listed) == set(removed)
    assert {r["reason"] for r in listed.values()} == {"off-topic cluster (browser test)"}
    assert {r["source"] for r in listed.values()} == {"lasso"}


def test_selection_table_after_a_lasso_and_undo_from_the_sidebar(app, page):
    """A lasso shows the selection table (texts looked up on the server from row positions); an Inspect key press
    is taken back by the sidebar's Undo, and the undo itself is in the decision log."""
    ws, url, ds_id = app["ws"], app["url"], app["dataset_id"]
    open_map(page, url)
    wait_idle(page)
    lasso(page, 0.5)
    heading, n_selected = selection_heading(page)
    wait_idle(page)
    assert n_selected > 0
    assert page.locator("[data-testid='stDataFrame']").count() >= 1
    assert page.get_by_role("button", name=re.compile(rf"^Remove {n_selected:,}$")).count() == 1

    page.goto(url + "/Inspect")
    page.get_by_text(re.compile(r"^page 1 of")).wait_for(timeout=60_000)
    wait_idle(page)
    before = {u for u, d in ws.decisions(ds_id).items()}
    for _ in range(5):  # a key pressed before the card's shortcut is bound does nothing: press again only then
        page.keyboard.press("x")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(ws.decisions(ds_id)) == len(before):
            time.sleep(0.2)
        if len(ws.decisions(ds_id)) > len(before):
            break
    page.get_by_text("Decision recorded").wait_for(timeout=60_000)
    wait_idle(page)
    after = ws.decisions(ds_id)
    new = [u for u in after if u not in before]
    assert len(new) == 1 and after[new[0]].action == "remove" and after[new[0]].source == "manual"

    page.get_by_role("button", name=re.compile("Undo the last decisions")).click()
    page.get_by_text(re.compile(r"^undid 1 decision$")).wait_for(timeout=60_000)
    wait_idle(page)
    assert new[0] not in ws.decisions(ds_id)
    log = ws.decision_log(ds_id, new[0])
    assert [e.action for e in log][-1] == "undo"  # the undo is recorded, not the event deleted


def test_a_map_decision_updates_the_sidebar_and_its_undo_works_on_the_map(app, page):
    """Keep a lasso on the map: the sidebar's counts say so at once (the map's fragment redraws them, no reload),
    and the sidebar's Undo, pressed on the map, takes the batch back and the counts with it."""
    ws, url, ds_id = app["ws"], app["url"], app["dataset_id"]
    open_map(page, url)
    wait_idle(page)
    kept_before = sum(d.action == "keep" for d in ws.decisions(ds_id).values())
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text(re.compile(rf"· {kept_before:,} kept ·")).wait_for(timeout=60_000)
    lasso(page, 0.4)
    heading, n_selected = selection_heading(page)
    wait_idle(page)
    page.get_by_role("button", name=re.compile(rf"^Keep {n_selected:,}$")).click()
    page.get_by_text(re.compile(rf"^Kept \(pinned\) {n_selected:,} rows")).wait_for(timeout=60_000)
    wait_idle(page)
    kept = sum(d.action == "keep" for d in ws.decisions(ds_id).values())
    assert kept >= n_selected
    sidebar.get_by_text(re.compile(rf"· {kept:,} kept ·")).wait_for(timeout=60_000)
    assert heading.count() == 1  # the selection is still there: the map was not reloaded

    sidebar.get_by_role("button", name=re.compile("Undo the last decisions")).click()
    sidebar.get_by_text(re.compile(rf"^undid {n_selected:,} decisions?$")).wait_for(timeout=60_000)
    sidebar.get_by_text(re.compile(rf"· {kept_before:,} kept ·")).wait_for(timeout=60_000)
    wait_idle(page)
    assert sum(d.action == "keep" for d in ws.decisions(ds_id).values()) == kept_before


def _stored_cache_keys(ws_path: Path) -> int:
    import numpy as np

    return sum(len(np.load(f)["keys"]) for f in (ws_path / "cache" / "embeddings").rglob("*.npz"))


def test_two_tabs_needing_embeddings_share_one_embedding_job(tmp_path):
    """The Map (project job) and Value (value job) of a dataset without embeddings, opened in two tabs: the second
    job waits for the first's embeddings, its progress line says so, and every text is embedded once."""
    from core import jobs
    from core.data import column, open_dataset
    from core.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    loaded = open_dataset(ws, "demo", limit=3000)
    ws.set_setting("active_dataset", loaded.dataset_id)
    ds_id = loaded.dataset_id
    proc, url = start_server(tmp_path / "ws", tmp_path / "streamlit.log")
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            tab_map = browser.new_page(viewport={"width": 1400, "height": 1100})
            tab_map.goto(url + "/Map")
            tab_map.get_by_text("Drawing the map", exact=False).wait_for(timeout=120_000)
            project_id = ws.get_setting(f"job.project.{ds_id}")
            assert project_id is not None
            # the project job holds the embedding once it reports texts embedded
            deadline = time.time() + 600
            while time.time() < deadline:
                job = jobs.get(ws, project_id)
                if re.search(r"[\d,]+/3,000", job.message) or not job.active:
                    break
                time.sleep(0.3)
            assert job.active, f"the project job ended before a second one could start: {job.message}"
            # a second tab starts valuing the same data (the Value page's button does exactly this)
            value_id = jobs.start(ws, ["value", f"ws:{ds_id}", "--method", "knn-shapley"], label="value")
            ws.set_setting(f"job.value.{ds_id}", value_id)
            tab_value = browser.new_page(viewport={"width": 1400, "height": 1100})
            tab_value.goto(url + "/Value")
            tab_value.get_by_text("waiting for the embedding job", exact=False).first.wait_for(timeout=300_000)
            browser.close()
        pj, vj = jobs.wait(ws, project_id, timeout=1200), jobs.wait(ws, value_id, timeout=1200)
        assert (pj.status, vj.status) == ("done", "done"), (pj.message, vj.message)
        assert "waiting for the embedding job" in jobs.log_tail(vj, 400)
        assert _stored_cache_keys(tmp_path / "ws") == len(set(column(loaded.ds, "text")))
        assert len(ws.embeddings(ds_id)) == 1
    finally:
        stop_server(proc)


def test_a_decision_after_the_map_grew_a_caption_still_updates_the_sidebar(app, page):
    """Colour by significance (a legend caption appears above the chart), then lasso and Remove: the selection
    panel, a fragment of its own inside the map's, still says what it did and redraws the sidebar's counts; the
    sidebar's Undo then takes the batch back."""
    ws, url, ds_id = app["ws"], app["url"], app["dataset_id"]
    open_map(page, url)
    wait_idle(page)
    page.locator("[data-testid='stRadio']").get_by_text("significance", exact=True).click()
    page.get_by_text(re.compile(r"^harmful: significantly below 0")).wait_for(timeout=60_000)
    wait_idle(page)
    removed_before = n_removed(ws, ds_id)
    lasso(page, 0.6)  # wider than the earlier tests' lassos: some of its rows are not removed yet
    heading, n_selected = selection_heading(page)
    wait_idle(page)
    remove_selection(page, n_selected)
    removed = n_removed(ws, ds_id)
    assert removed > removed_before
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text(re.compile(rf"^{removed:,} removed ·")).wait_for(timeout=60_000)
    assert heading.count() == 1  # the selection stands

    sidebar.get_by_role("button", name=re.compile("Undo the last decisions")).click()
    sidebar.get_by_text(re.compile(rf"^undid {n_selected:,} decisions?$")).wait_for(timeout=60_000)
    sidebar.get_by_text(re.compile(rf"^{removed_before:,} removed ·")).wait_for(timeout=60_000)
    wait_idle(page)
    assert n_removed(ws, ds_id) == removed_before


REMOVED_DRAWN_JS = ("() => { const g = document.querySelector('.js-plotly-plot');"
                    " if (!g || !g._fullData || !g._fullData.length) return -1;"
                    " const c = g._fullData[0].marker.color; let n = 0;"
                    " for (let i = 0; i < c.length; i++) { if (c[i] === 3) n++; } return n; }")  # 3: "remove"


def test_coloured_by_decision_the_map_shows_a_remove_at_once_and_its_undo(app, page):
    """Colour by decision, lasso, Remove: the decision is taken in the selection panel's fragment, and because the
    figure shows decisions the whole page is drawn again: the map colours the removed rows at once."""
    ws, url, ds_id = app["ws"], app["url"], app["dataset_id"]
    open_map(page, url)
    wait_idle(page)
    page.locator("[data-testid='stRadio']").get_by_text("decision", exact=True).click()
    wait_idle(page)
    removed_before = n_removed(ws, ds_id)
    page.wait_for_function(f"() => ({REMOVED_DRAWN_JS})() === {removed_before}", timeout=60_000)
    lasso(page, 0.6)
    heading, n_selected = selection_heading(page)
    wait_idle(page)
    remove_selection(page, n_selected)
    removed = n_removed(ws, ds_id)
    assert removed > removed_before
    page.wait_for_function(f"() => ({REMOVED_DRAWN_JS})() === {removed}", timeout=60_000)

    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_role("button", name=re.compile("Undo the last decisions")).click()
    sidebar.get_by_text(re.compile(rf"^{removed_before:,} removed ·")).wait_for(timeout=60_000)
    page.wait_for_function(f"() => ({REMOVED_DRAWN_JS})() === {removed_before}", timeout=60_000)
    wait_idle(page)
    assert n_removed(ws, ds_id) == removed_before
