"""How fast the Map (and the clicks around it) answer in a real browser, Winnow beside a minimal page (the floor).

Builds a workspace with the demo tweets (all 38,158 by default, plus one hostile row), fake hashed embeddings,
KNN-Shapley values and a UMAP map (tests/demo_workspace.py), unless --workspace points at one already built, then
starts `streamlit run app.py` and times, in Debian's chromium through Playwright, each interaction from the user's
action (click, key, mouse-up) to what it should show (the selection table's heading, the new colour bar, the
"Removed" message, ...). The floor is a page holding only the same `st.plotly_chart` (same figure) and a selection
table of the selected rows' texts (benchmarks/bench_server.py writes it), timed the same way. Prints one table.

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
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

SEL_HEAD = re.compile(r"^Selection: [\d,]+ rows$")


def _shape(page, fraction: float, *, box: bool) -> tuple[float, str]:
    """Drag a lasso (octagon) or a box around the middle of the plot; returns (seconds from mouse-up until the
    selection table's heading shows, its text)."""
    area = page.locator(".nsewdrag").first.bounding_box()
    cx, cy = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    rx, ry = area["width"] * fraction / 2, area["height"] * fraction / 2
    if box:
        pts = [(cx - rx, cy - ry), (cx + rx, cy + ry)]
    else:
        pts = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in [i * math.pi / 4 for i in range(9)]]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for q in pts[1:]:
        page.mouse.move(*q, steps=4)
    t = time.perf_counter()
    page.mouse.up()
    head = page.get_by_text(SEL_HEAD)
    head.wait_for(timeout=600_000)
    return time.perf_counter() - t, head.inner_text().removeprefix("Selection: ")


def _clear_selection(page, wait_idle) -> None:
    area = page.locator(".nsewdrag").first.bounding_box()
    page.mouse.dblclick(area["x"] + 5, area["y"] + 5)
    page.get_by_text(SEL_HEAD).wait_for(state="detached", timeout=600_000)
    wait_idle(page, 600)


def _dragmode(page, mode: str) -> None:
    title = {"lasso": "Lasso Select", "box": "Box Select"}[mode]
    page.locator(".js-plotly-plot").first.hover()
    page.locator(f".modebar-btn[data-title='{title}']").first.click()


def _colour(page, name: str) -> float:
    t = time.perf_counter()
    page.get_by_text(name, exact=True).first.click()
    page.wait_for_function(  # the Map's figure names its colouring in layout.meta (the floor's is the same figure)
        "(name) => { const g = document.querySelector('.js-plotly-plot');"
        " return !!g && !!g.layout && !!g.layout.meta && g.layout.meta.colour === name"
        " && !!g._fullData && g._fullData.length === 1; }", arg=name, timeout=600_000, polling="raf")
    return time.perf_counter() - t


def round_trips(url: str, *, floor: bool, repeat: int = 2) -> dict[str, float]:
    """Seconds per interaction (median of `repeat` where repeatable) against a running server at `url`."""
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, FLAGS, wait_idle

    out: dict[str, float] = {}
    med = statistics.median
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1300})
        opens = []
        for _ in range(repeat + 1):
            opens.append(_open(page, url if floor else url + "/Map"))
            wait_idle(page, 600)
        out["open the Map (cold)"] = opens[0]
        out["open the Map (warm)"] = med(opens[1:])
        out["points drawn"] = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullData[0].x.length")
        rec = []  # both directions timed: one recolour varies by a few hundred ms with the order of plotly's two
        for _ in range(repeat):  # draws and the browser's paint, so 2 x repeat samples give a steadier median
            rec.append(_colour(page, "label"))
            wait_idle(page, 600)
            rec.append(_colour(page, "value"))
            wait_idle(page, 600)
        out["recolour"] = med(rec)
        las, box = [], []
        for _ in range(repeat):
            sec, n = _shape(page, 0.5, box=False)
            las.append(sec)
            out["lasso points"] = n
            wait_idle(page, 600)
            _clear_selection(page, wait_idle)
        out["lasso -> selection table"] = med(las)
        _dragmode(page, "box")
        for _ in range(repeat):
            sec, n = _shape(page, 0.2, box=True)
            box.append(sec)
            out["box points"] = n
            wait_idle(page, 600)
            _clear_selection(page, wait_idle)
        out["box -> selection table"] = med(box)
        _dragmode(page, "lasso")
        if not floor:
            _colour(page, "label")  # decisions do not change this colouring: the selection stays after Remove
            wait_idle(page, 600)
            sec, n = _shape(page, 0.5, box=False)
            wait_idle(page, 600)
            t = time.perf_counter()
            page.get_by_role("button", name=re.compile(rf"^Remove {re.escape(n.split()[0])}$")).click()
            page.get_by_text(re.compile(r"^Removed [\d,]+ rows")).wait_for(timeout=600_000)
            out["Remove (lasso) -> 'Removed' shown"] = time.perf_counter() - t
            wait_idle(page, 600)
            t = time.perf_counter()
            page.get_by_role("button", name=re.compile(rf"^Keep {re.escape(n.split()[0])}$")).click()
            page.get_by_text(re.compile(r"^Kept \(pinned\) [\d,]+ rows")).wait_for(timeout=600_000)
            out["Keep (lasso) -> 'Kept' shown"] = time.perf_counter() - t
            wait_idle(page, 600)
            t = time.perf_counter()
            page.get_by_role("button", name=re.compile("Undo the last decisions")).click()
            page.get_by_text(re.compile(r"^undid [\d,]+ decision")).wait_for(timeout=600_000)
            out["Undo in the sidebar -> counts updated"] = time.perf_counter() - t
            wait_idle(page, 600)
            page.goto(url + "/Inspect")
            page.get_by_text(re.compile(r"^page 1 of")).wait_for(timeout=600_000)
            wait_idle(page, 600)
            keys = []
            for _ in range(repeat):
                first = page.get_by_text(re.compile(r"^#[\d,]+ of [\d,]+, lowest value first")).first.inner_text()
                t = time.perf_counter()
                page.keyboard.press("x")
                page.wait_for_function(
                    "(old) => { const e = [...document.querySelectorAll('[data-testid=stText]')]"
                    ".find(e => /lowest value first/.test(e.innerText)); return e && e.innerText !== old; }",
                    arg=first, timeout=600_000)
                keys.append(time.perf_counter() - t)
                wait_idle(page, 600)
            out["Inspect key X -> next card"] = med(keys)
        browser.close()
    return out


DRAWN_JS = ("() => { const g = document.querySelector('.js-plotly-plot');"
            " return !!g && !!g._fullData && g._fullData.length === 1 && g._fullData[0].x.length > 0"
            " && !!g.querySelector('.nsewdrag'); }")


def _open(page, url: str) -> float:
    """Seconds from `goto` until the plot holds its points and its drag layer, read in the page (one check per
    animation frame). Winnow and the floor are timed by the same single wait: a sequence of waits (drag layer
    visible, then canvas attached, then data) costs a round trip each into a page that is busy in long tasks while
    plotly draws, and added about a second to Winnow's figure that the floor's did not pay."""
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_function(DRAWN_JS, timeout=600_000, polling="raf")
    return time.perf_counter() - t0


def start_floor(floor_dir: Path, env_extra: dict[str, str], log: Path):
    """`streamlit run floor_app.py` on a free loopback port; returns (process, url)."""
    from _server import start

    return start("floor_app.py", cwd=floor_dir, env=env_extra, log_path=log,
                 args=("--server.fileWatcherType", "none"))


def browser_table(ws_path: Path, floor_dir: Path | None, floor_env: dict[str, str], repeat: int) -> dict:
    """{'winnow': {...}, 'floor': {...}} seconds per interaction, against fresh servers."""
    from _server import stop
    from test_browser import start_server

    res = {}
    proc, url = start_server(ws_path, ws_path.parent / "bench_map_streamlit.log")
    try:
        res["winnow"] = round_trips(url, floor=False, repeat=repeat)
    finally:
        stop(proc)
    if floor_dir is not None:
        proc, url = start_floor(floor_dir, floor_env, floor_dir / "floor_streamlit.log")
        try:
            res["floor"] = round_trips(url, floor=True, repeat=repeat)
        finally:
            stop(proc)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="demo rows (a stratified sample); default: all")
    ap.add_argument("--projection", choices=("auto", "umap", "pca"), default="umap")
    ap.add_argument("--workspace", default=None, help="use (or build into) this folder instead of a temp one")
    ap.add_argument("--repeat", type=int, default=2, help="runs per interaction, median shown (default 2)")
    ap.add_argument("--no-floor", action="store_true", help="skip the minimal page")
    args = ap.parse_args()

    from demo_workspace import build_workspace

    ws_path = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="winnow-bench-")) / "ws"
    t0 = time.perf_counter()
    if not (ws_path / "winnow.db").exists():
        build_workspace(ws_path, n=args.n, projection=args.projection)
    build = time.perf_counter() - t0
    work = Path(tempfile.mkdtemp(prefix="winnow-bench-map-"))
    copy = work / "ws"
    shutil.copytree(ws_path, copy, ignore=shutil.ignore_patterns("jobs", "locks"))
    floor_dir, floor_env = None, {}
    if not args.no_floor:
        from _floor import floor_page

        floor_dir = work / "floor"
        floor_dir.mkdir()
        floor_env = floor_page(copy, floor_dir)
    res = browser_table(copy, floor_dir, floor_env, args.repeat)
    load = os.getloadavg()
    w, f = res["winnow"], res.get("floor", {})
    print(f"{dt.datetime.now():%Y-%m-%d %H:%M} · {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} · Python {platform.python_version()} · workspace built in {build:.0f} s · "
          f"chromium --headless --disable-gpu (software WebGL) · {w.get('points drawn', 0):,} points · lasso "
          f"{w.get('lasso points')}, box {w.get('box points')} · median of {args.repeat}")
    print()
    print_table(w, f)
    shutil.rmtree(work, ignore_errors=True)


def print_table(w: dict, f: dict, server: dict | None = None) -> None:
    names = [k for k in w if not k.endswith("points") and k != "points drawn"]
    if server is None:
        print("| interaction | Winnow, browser s | floor, browser s | Winnow / floor |")
        print("|---|---|---|---|")
    for k in names:
        a, b = w[k], f.get(k)
        ratio = f"{a / b:.1f}x" if b else "-"
        print(f"| {k} | {a:.2f} | {'-' if b is None else f'{b:.2f}'} | {ratio} |")


if __name__ == "__main__":
    main()
