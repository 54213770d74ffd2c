"""How fast the Map page is in a real browser: open, recolour, lasso (Debian's chromium through Playwright).

Builds a workspace with the demo tweets (all 38,158 by default, plus one hostile row), fake hashed embeddings,
KNN-Shapley values and a UMAP map (tests/demo_workspace.py), unless --workspace points at one already built, then
starts `streamlit run app.py` and times the page. Prints one markdown table.

    python benchmarks/bench_map.py                    # full demo (builds for a few minutes: UMAP on 38k rows)
    python benchmarks/bench_map.py --n 2000 --projection pca
    python benchmarks/bench_map.py --workspace /tmp/wsfull --keep
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _lasso_times(page, fraction: float, wait_idle) -> tuple[float, float, str]:
    box = page.locator(".nsewdrag").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    rx, ry = box["width"] * fraction / 2, box["height"] * fraction / 2
    pts = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in [i * math.pi / 4 for i in range(9)]]
    t = time.perf_counter()
    page.mouse.move(*pts[0])
    page.mouse.down()
    for q in pts[1:]:
        page.mouse.move(*q, steps=2)
    drag = time.perf_counter() - t
    t = time.perf_counter()
    page.mouse.up()
    head = page.get_by_text(re.compile(r"^Selection: [\d,]+ rows$"))
    head.wait_for(timeout=600_000)
    wait_idle(page, 600)
    table = time.perf_counter() - t
    page.mouse.dblclick(box["x"] + 5, box["y"] + 5)  # clear the selection
    wait_idle(page, 600)
    return drag, table, head.inner_text().removeprefix("Selection: ")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="demo rows (a stratified sample); default: all")
    ap.add_argument("--projection", choices=("auto", "umap", "pca"), default="umap")
    ap.add_argument("--workspace", default=None, help="use (or build into) this folder instead of a temp one")
    ap.add_argument("--repeat", type=int, default=3, help="page opens to time (default 3)")
    ap.add_argument("--screenshots", default=str(ROOT / "tests" / "artifacts"), help="where 3_map_full_demo.png goes")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from demo_workspace import build_workspace
    from test_browser import CHROMIUM, FLAGS, open_map, start_server, stop_server, wait_idle

    ws_path = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="winnow-bench-")) / "ws"
    t0 = time.perf_counter()
    if not (ws_path / "winnow.db").exists():
        build_workspace(ws_path, n=args.n, projection=args.projection)
    build = time.perf_counter() - t0
    shots = Path(args.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    proc, url = start_server(ws_path, ws_path.parent / "bench_map_streamlit.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            for i in range(args.repeat):
                s = open_map(page, url, timeout=600_000)
                n = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullData[0].x.length")
                rows.append((f"open the Map page ({'cold server' if i == 0 else 'warm'}) until {n:,} points are drawn",
                             f"{s:.1f}"))
                wait_idle(page, 600)
            page.screenshot(path=str(shots / "3_map_full_demo.png"))
            t = time.perf_counter()
            page.get_by_text("label", exact=True).first.click()
            page.wait_for_function(
                "() => { const m = document.querySelector('.js-plotly-plot')._fullData[0].marker;"
                " return m.colorbar && m.colorbar.title.text === 'label'; }", timeout=600_000)
            rows.append(("recolour by label", f"{time.perf_counter() - t:.1f}"))
            wait_idle(page, 600)
            for frac in (0.1, 0.4):
                drag, table, n_sel = _lasso_times(page, frac, wait_idle)
                rows.append((f"lasso drag, 16 mouse moves (plotly highlights as it goes; {n_sel})", f"{drag:.1f}"))
                rows.append((f"mouse up -> selection table of {n_sel}", f"{table:.1f}"))
            browser.close()
    finally:
        stop_server(proc)
    load = os.getloadavg()
    print(f"{dt.date.today()} · {os.cpu_count()} CPUs (load {load[0]:.1f}) · {platform.python_version()} · "
          f"workspace built in {build:.0f} s · chromium --headless --disable-gpu (software WebGL)")
    print()
    print("| step | seconds |")
    print("|---|---|")
    for step, sec in rows:
        print(f"| {step} | {sec} |")


if __name__ == "__main__":
    main()
