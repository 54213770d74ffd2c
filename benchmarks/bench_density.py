"""Where the one-trace Scattergl map stops being responsive in chromium, and how the density-image map (core.density,
ui_density) answers up to a million points.

Builds synthetic workspaces (tests/synthetic_map.py: coordinates, values and labels; no vectors: the map needs none),
starts `streamlit run app.py` once per size and path (WINNOW_DENSITY_ROWS forces the Scattergl or the density path),
and times in Debian's chromium (software WebGL) from the user's action to what it should show:

- open the Map: page load until the figure is drawn (cold: the server's first reading of the data; warm: again);
- recolour: a click on "label" until the figure says it is coloured by label;
- lasso: mouse-up of an octagon around the middle until the selection table's heading shows (its row count beside).

Also times the server-side steps alone on the largest size (the image of every point; a lasso resolved against
every row). Prints one markdown table; the header names the load average.

    python benchmarks/bench_density.py                           # 50k, 100k, 200k, 400k both ways; 1M density only
    python benchmarks/bench_density.py --sizes 50000 --big 200000 --workdir /tmp/bench-density
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

SEL_HEAD = re.compile(r"^Selection: [\d,]+ rows$")
DRAWN_JS = ("() => { const g = document.querySelector('.js-plotly-plot');"
            " return !!g && !!g._fullData && g._fullData.length >= 1 && g._fullData[0].x.length > 0"
            " && !!g.layout && !!g.layout.meta; }")
COLOUR_JS = ("(name) => { const g = document.querySelector('.js-plotly-plot');"
             " return !!g && !!g.layout && !!g.layout.meta && g.layout.meta.colour === name && !!g._fullData; }")


def _workspace(workdir: Path, n: int) -> Path:
    from synthetic_map import build_synthetic_workspace

    path = workdir / f"ws-{n}"
    if not (path / "winnow.db").exists():
        t = time.perf_counter()
        build_synthetic_workspace(path, n)
        print(f"built {n:,} rows in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def _timed(fn, limit: float) -> float | None:
    try:
        return fn()
    except Exception as e:  # a timeout: the interaction did not answer within the limit
        print(f"  gave up: {type(e).__name__}: {str(e).splitlines()[0][:160]}", file=sys.stderr)
        return None


def _lasso(page, fraction: float, limit_ms: float) -> tuple[float, str]:
    area = page.locator(".nsewdrag").first.bounding_box()
    cx, cy = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    rx, ry = area["width"] * fraction / 2, area["height"] * fraction / 2
    pts = [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in [i * math.pi / 4 for i in range(9)]]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for q in pts[1:]:
        page.mouse.move(*q, steps=4)
    before = page.get_by_text(SEL_HEAD).all_inner_texts()
    t = time.perf_counter()
    page.mouse.up()
    head = page.get_by_text(SEL_HEAD)
    if before:  # a lasso over a standing selection: wait for the heading to name the new count
        page.wait_for_function(
            "(old) => [...document.querySelectorAll('h3')].some(e => /^Selection: [\\d,]+ rows$/.test(e.innerText)"
            " && e.innerText !== old)", arg=before[0], timeout=limit_ms)
    head.wait_for(timeout=limit_ms)
    return time.perf_counter() - t, head.inner_text().removeprefix("Selection: ").removesuffix(" rows")


def browser_run(ws_path: Path, *, density: bool, limit: float, lasso_fraction: float, recolour: bool = True
                ) -> dict:
    """Seconds per interaction against a fresh server (None: no answer within `limit` seconds)."""
    from _server import stop
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, FLAGS, start_server, wait_idle

    os.environ["WINNOW_DENSITY_ROWS"] = "0" if density else str(10**9)  # inherited by the server started below
    out: dict = {}
    ms = limit * 1000
    proc, url = start_server(ws_path, ws_path.parent / f"bench_density_{ws_path.name}.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1300})

            def open_map() -> float:
                t = time.perf_counter()
                page.goto(url + "/Map")
                page.wait_for_function(DRAWN_JS, timeout=ms)
                return time.perf_counter() - t

            out["open (cold)"] = _timed(open_map, limit)
            if out["open (cold)"] is None:
                return out
            wait_idle(page, limit)
            out["open (warm)"] = _timed(open_map, limit)
            wait_idle(page, limit)
            out["points drawn"] = page.evaluate(
                "() => document.querySelector('.js-plotly-plot')._fullData.reduce((s, t) => s + t.x.length, 0)")
            if recolour:
                def colour() -> float:
                    t = time.perf_counter()
                    page.get_by_text("label", exact=True).first.click()
                    page.wait_for_function(COLOUR_JS, arg="label", timeout=ms)
                    return time.perf_counter() - t
                out["recolour"] = _timed(colour, limit)
                wait_idle(page, limit)
            got = _timed(lambda: _lasso(page, lasso_fraction, ms), limit)
            out["lasso"], out["lasso rows"] = got if got else (None, "-")
            if got:  # a second lasso (the first pays once-per-process costs such as the significance of every row)
                wait_idle(page, limit)
                if density:
                    page.get_by_role("button", name="Clear the selection").click()
                else:  # a double-click clears the chart's selection
                    area = page.locator(".nsewdrag").first.bounding_box()
                    page.mouse.dblclick(area["x"] + 5, area["y"] + 5)
                page.get_by_text(SEL_HEAD).wait_for(state="detached", timeout=ms)
                wait_idle(page, limit)
                again = _timed(lambda: _lasso(page, lasso_fraction * 0.9, ms), limit)
                out["lasso again"], out["lasso again rows"] = again if again else (None, "-")
            browser.close()
    finally:
        stop(proc)
    return out


def server_steps(n: int) -> dict:
    """Seconds of the server-side steps alone at n points: the image of every point, a lasso over about 10 %."""
    import numpy as np

    from core import density, lasso
    from synthetic_map import synthetic_points

    pts = synthetic_points(n)
    x, y, v = pts["x"].astype(np.float64), pts["y"].astype(np.float64), pts["value"]
    out = {}
    t = time.perf_counter()
    win = density.window_of(x, y)
    pix = density.pixel_index(x, y, win, 1000, 600)
    count, mean = density.mean_image(pix, v, 1000, 600)
    rgba = density.shade_mean(count, mean, [(0, "#b2182b"), (0.5, "#d0d0d0"), (1, "#2166ac")], -3e-3, 3e-3)
    density.png_data_uri(rgba)
    out["image of every point (bin, mean, shade, PNG)"] = time.perf_counter() - t
    c = np.median(np.column_stack([x, y]), axis=0)
    r = 4.0
    poly = {"xref": "x", "yref": "y", "x": [float(c[0] + r * math.cos(a)) for a in np.arange(64) * math.pi / 32],
            "y": [float(c[1] + r * math.sin(a)) for a in np.arange(64) * math.pi / 32]}
    t = time.perf_counter()
    rows = lasso.rows_in_selection({"lasso": [poly], "box": []}, np.column_stack([x, y]))
    out["lasso resolved against every row"] = time.perf_counter() - t
    out["lasso rows"] = len(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="50000,100000,200000,400000", help="rows timed both ways (Scattergl, density)")
    ap.add_argument("--big", type=int, default=1_000_000, help="rows timed on the density path only (0: skip)")
    ap.add_argument("--workdir", default=None, help="keep (and reuse) the synthetic workspaces here")
    ap.add_argument("--limit", type=float, default=180.0, help="seconds before an interaction counts as no answer")
    ap.add_argument("--big-lasso", type=float, default=0.3, help="lasso size (fraction of the plot) on the big map")
    args = ap.parse_args()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="winnow-bench-density-"))
    workdir.mkdir(parents=True, exist_ok=True)

    rows: list[tuple[int, str, dict]] = []
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        ws = _workspace(workdir, n)
        for dens in (False, True):
            print(f"{n:,} rows, {'density' if dens else 'scattergl'}…", file=sys.stderr)
            rows.append((n, "density image" if dens else "Scattergl", browser_run(
                ws, density=dens, limit=args.limit, lasso_fraction=0.5)))
    if args.big:
        ws = _workspace(workdir, args.big)
        print(f"{args.big:,} rows, density…", file=sys.stderr)
        rows.append((args.big, "density image", browser_run(ws, density=True, limit=args.limit,
                                                            lasso_fraction=args.big_lasso)))
    server = server_steps(args.big or max(n for n, _, _ in rows))

    load = os.getloadavg()
    print(f"{dt.datetime.now():%Y-%m-%d %H:%M} · {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} "
          f"{load[2]:.1f} · Python {platform.python_version()} · chromium --headless --disable-gpu (software WebGL) "
          f"· synthetic points (tests/synthetic_map.py) · no answer within {args.limit:.0f} s shows as '>{args.limit:.0f}'")
    print()
    print("| rows | map | open, cold s | open, warm s | points drawn | recolour s | lasso -> table s | lasso rows "
          "| 2nd lasso s | its rows |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def f(v) -> str:
        return f">{args.limit:.0f}" if v is None else f"{v:.2f}"

    for n, kind, r in rows:
        drawn = f"{r['points drawn']:,}" if "points drawn" in r else "-"
        rec = f(r.get("recolour")) if "recolour" in r else "-"
        las = f(r.get("lasso")) if "lasso" in r else "-"
        again = f(r.get("lasso again")) if "lasso again" in r else "-"
        print(f"| {n:,} | {kind} | {f(r.get('open (cold)'))} | {f(r.get('open (warm)'))} | {drawn} | {rec} | "
              f"{las} | {r.get('lasso rows', '-')} | {again} | {r.get('lasso again rows', '-')} |")
    print()
    n_server = args.big or max(n for n, _, _ in rows)
    print(f"Server side alone, {n_server:,} points: " + " · ".join(
        f"{k} {v:.2f} s" for k, v in server.items() if k != "lasso rows") + f" ({server['lasso rows']:,} rows)")


if __name__ == "__main__":
    main()
