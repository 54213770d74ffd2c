"""The large map in a real browser: a density image under a sample, a lasso that selects every row under it (drawn
or not), and Remove on those rows.

A synthetic workspace of 30,000 rows (tests/synthetic_map.py) with the density threshold lowered to 1,000 rows
(WINNOW_DENSITY_ROWS), so the map draws 20,000 of the rows as points over the image of all of them. Drives Debian's
chromium through Playwright against `streamlit run app.py` on a free loopback port, like tests/test_browser.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from test_browser import ARTIFACTS, CHROMIUM, FLAGS, ROOT, remove_selection, selection_heading, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")]
playwright_api = pytest.importorskip("playwright.sync_api")

from benchmarks import _server  # noqa: E402

N_ROWS = 30_000
FIG_JS = "() => { const g = document.querySelector('.js-plotly-plot'); return g && g.layout && g.layout.meta; }"


def _pnpoly(x: np.ndarray, y: np.ndarray, px: list[float], py: list[float]) -> np.ndarray:
    """The classic pnpoly test (W. Randolph Franklin), one edge at a time over every point."""
    inside = np.zeros(len(x), dtype=bool)
    j = len(px) - 1
    for i in range(len(px)):
        crosses = (py[i] > y) != (py[j] > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (px[j] - px[i]) * (y - py[i]) / (py[j] - py[i]) + px[i]
        inside ^= crosses & (x < at)
        j = i
    return inside


def _path_xy(path: str) -> tuple[list[float], list[float]]:
    pts = [p.split(",") for p in path.strip("MZ").split("L")]
    return [float(a) for a, _ in pts], [float(b) for _, b in pts]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    from synthetic_map import build_synthetic_workspace

    root = tmp_path_factory.mktemp("browser_scale")
    facts = build_synthetic_workspace(root / "ws", N_ROWS)
    proc, url = _server.start("app.py", cwd=ROOT, env={"WINNOW_HOME": str(root / "ws"), "WINNOW_DENSITY_ROWS": "1000"},
                              log_path=root / "streamlit.log", args=("--server.fileWatcherType", "none"), timeout=90)
    try:
        yield {"url": url, **facts}
    finally:
        _server.stop(proc)


def test_density_map_lasso_selects_every_row_under_it_and_remove_records_them(big):
    ws, url, ds_id, uids = big["ws"], big["url"], big["dataset_id"], big["uids"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        page.goto(url + "/Map")
        page.wait_for_function("() => { const g = document.querySelector('.js-plotly-plot');"
                               " return !!g && !!g.layout && !!g.layout.meta && g.layout.meta.density === true"
                               " && !!g._fullData && g._fullData[0].x.length > 0; }", timeout=120_000)
        wait_idle(page)
        meta = page.evaluate(FIG_JS)
        assert meta["in_window"] == N_ROWS and meta["sample"] < N_ROWS
        # the image is drawn: plotly puts layout.images in the subplot's image layer, under the points
        image = page.locator(".js-plotly-plot .imagelayer image")
        assert image.count() == 1
        assert (image.get_attribute("href") or "").startswith("data:image/png;base64,")
        assert float(image.get_attribute("width")) > 500
        page.screenshot(path=str(ARTIFACTS / "3_map_density.png"), full_page=True)
        drawn_x = np.asarray(page.evaluate("() => Array.from(document.querySelector('.js-plotly-plot')"
                                           "._fullData[0].x)"), dtype=np.float64)
        drawn_y = np.asarray(page.evaluate("() => Array.from(document.querySelector('.js-plotly-plot')"
                                           "._fullData[0].y)"), dtype=np.float64)

        page.evaluate("() => { document.querySelector('.js-plotly-plot').dataset.probe = 'before the lasso'; }")
        area = page.locator(".nsewdrag").first.bounding_box()
        cx, cy = area["x"] + area["width"] * 0.45, area["y"] + area["height"] / 2
        rx, ry = area["width"] * 0.2, area["height"] * 0.22
        octagon = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in [i * math.pi / 4 for i in range(9)]]
        page.mouse.move(*octagon[0])
        page.mouse.down()
        for q in octagon[1:]:
            page.mouse.move(*q, steps=6)
        page.mouse.up()
        heading, n_selected = selection_heading(page)
        wait_idle(page)
        page.screenshot(path=str(ARTIFACTS / "3_map_density_lasso.png"), full_page=True)

        # the chart was not drawn again (the same element, one trace: no overlay) and shows the lasso itself ...
        assert page.evaluate("() => document.querySelector('.js-plotly-plot').dataset.probe") == "before the lasso"
        assert page.evaluate("() => document.querySelector('.js-plotly-plot')._fullData.length") == 1
        # ... whose polygon, the one the server resolved, is the one drawn ...
        path = page.evaluate("() => document.querySelector('.js-plotly-plot').layout.selections[0].path")
        px, py = _path_xy(path)
        xa = page.evaluate("() => { const a = document.querySelector('.js-plotly-plot')._fullLayout.xaxis;"
                           " return [a.range[0], a.range[1]]; }")
        ya = page.evaluate("() => { const a = document.querySelector('.js-plotly-plot')._fullLayout.yaxis;"
                           " return [a.range[0], a.range[1]]; }")
        to_x = lambda sx: xa[0] + (sx - area["x"]) / area["width"] * (xa[1] - xa[0])  # noqa: E731
        to_y = lambda sy: ya[1] - (sy - area["y"]) / area["height"] * (ya[1] - ya[0])  # noqa: E731
        tol_x, tol_y = 3 / area["width"] * (xa[1] - xa[0]), 3 / area["height"] * (ya[1] - ya[0])
        for sx, sy in octagon[:-1]:
            d = [max(abs(a - to_x(sx)) / tol_x, abs(b - to_y(sy)) / tol_y) for a, b in zip(px, py)]
            assert min(d) <= 1.0, "a corner of the drawn lasso is missing from the polygon the server received"
        # ... and the selection is every row under it, not only the drawn sample
        inside = _pnpoly(np.asarray(big["x"], np.float64), np.asarray(big["y"], np.float64), px, py)
        assert n_selected == int(inside.sum()) > 0
        assert int(_pnpoly(drawn_x, drawn_y, px, py).sum()) < n_selected

        page.get_by_label("Reason (kept in the export manifest)").fill("dense blob (browser, density map)")
        page.keyboard.press("Enter")
        wait_idle(page)
        remove_selection(page, n_selected)
        browser.close()

    removed = {u: d for u, d in ws.decisions(ds_id).items() if d.action == "remove"}
    assert set(removed) == {uids[i] for i in np.flatnonzero(inside)}
    assert {d.source for d in removed.values()} == {"lasso"}
    assert {d.reason for d in removed.values()} == {"dense blob (browser, density map)"}
