"""A newcomer's first minutes on the demo: from an empty workspace to the first map coloured by value, the full
valuation and the full map, in the app (chromium through Playwright) and, side by side, the floor: the same work
run one step after the other from the CLI.

    python benchmarks/bench_first_run.py                 # cold (--cold): empty WINNOW_HOME, empty embedding cache
    python benchmarks/bench_first_run.py --warm-cache    # the embedding cache copied from --cache-from first

A fresh install is simulated by default: an empty numba cache (NUMBA_CACHE_DIR) on which the README's set-up step
`core warm-up` runs first, timed on its own line (--installed-kernels: use this install's compiled kernels).

App: `streamlit run app.py` on a free loopback port with an empty WINNOW_HOME; the browser opens the Value page
(the first start loads the demo) and clicks Compute values (t = 0), then opens the Map and waits for its points
coloured by value (first map: the preliminary sample's), then for every row's map ("full map": the plot holds as
many points as the dataset has rows, is coloured by value and not stale, and no preliminary banner is shown; the
rows are read from the workspace). "full valuation" is when the run over every row was recorded (from the
workspace). CLI floor: `value demo --limit N` + `project demo --limit N` (the sample's map), then `value demo` and
`project demo --no-predictions` over every row, in a second empty workspace; each figure is the time since the
first command started. Goals (issue 17): first map within 60 s of the click, every row valued and mapped within 4
minutes. Prints a markdown table; the header carries the load. Progress goes to stderr as each stage lands.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


_KERNELS: dict[str, str] = {}  # NUMBA_CACHE_DIR per workspace when a fresh install is simulated


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, WINNOW_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    if str(home) in _KERNELS:
        env["NUMBA_CACHE_DIR"] = _KERNELS[str(home)]
    return env


def _fresh(home: Path, warm_from: Path | None, fresh_install: bool = False) -> float | None:
    """An empty workspace (with the embedding cache of `warm_from`); with `fresh_install`, an empty numba cache too
    and the README's set-up step `core warm-up` run on it: returns that step's seconds (None without it)."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    if warm_from is not None:
        shutil.copytree(warm_from / "cache", home / "cache")
    if not fresh_install:
        return None
    kernels = home.parent / f"{home.name}-numba"
    shutil.rmtree(kernels, ignore_errors=True)
    kernels.mkdir()
    _KERNELS[str(home)] = str(kernels)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "core", "warm-up"], cwd=ROOT, env=_env(home), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    took = time.time() - t0
    print(f"  set-up: core warm-up on an empty numba cache, {took:.0f} s", file=sys.stderr, flush=True)
    return took


def _full_valued_at(home: Path) -> float | None:
    """When the newest non-preliminary values run finished (epoch seconds), from the workspace."""
    db = home / "winnow.db"
    if not db.exists():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT params, finished FROM runs WHERE kind='values' AND status='done'").fetchall()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    done = [f for p, f in rows if '"preliminary": true' not in p and f is not None]
    return min(done) if done else None


def _rows(home: Path, name: str) -> int | None:
    """Rows of the dataset `name` as loaded into the workspace (None until it is)."""
    db = home / "winnow.db"
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            got = con.execute("SELECT n_rows FROM datasets WHERE name = ? ORDER BY id DESC", (name,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(got[0]) if got else None


# What the Map shows now: the points of its (first) plot, what they are coloured by, whether Streamlit marks the
# plot stale (a rerun in flight: the old figure stays on screen until the new one arrives, while elements above it
# may already be gone, e.g. the preliminary banner), and whether the preliminary banner is on the page (not stale).
_MAP_STATE = """() => {
  const g = document.querySelector('.js-plotly-plot');
  const n = g && g._fullData && g._fullData.length ? g._fullData[0].x.length : -1;
  const colour = g && g.layout && g.layout.meta ? g.layout.meta.colour : null;
  const stale = !!(g && g.closest('[data-stale="true"]'));
  const banner = Array.from(document.querySelectorAll('[data-testid="stAlert"]')).some(
      a => !a.closest('[data-stale="true"]') && a.innerText.includes('Preliminary:'));
  return {n: n, colour: colour, stale: stale, banner: banner};
}"""


def _map_state(page) -> dict:
    try:
        return page.evaluate(_MAP_STATE)
    except Exception:  # noqa: BLE001 (the page navigating or rerendering: read it again next tick)
        return {"n": -1, "colour": None, "stale": True, "banner": False}


def run_app(home: Path, timeout: float, data: str = "demo") -> dict[str, float | None]:
    from playwright.sync_api import sync_playwright

    from _server import start, stop

    proc, url = start("app.py", cwd=ROOT, env=_env(home), log_path=home.parent / f"{home.name}-streamlit.log")
    out: dict[str, float | None] = {"first map": None, "full valuation": None, "full map": None}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url + "/Value")
            button = page.get_by_role("button", name="Compute values")
            button.wait_for(timeout=300_000)
            page.get_by_text("No valuation yet").wait_for(timeout=300_000)
            t0 = time.time()
            button.click()
            page.get_by_text("No valuation yet").wait_for(state="detached", timeout=60_000)
            page.goto(url + "/Map")
            end = t0 + timeout
            total = None
            while time.time() < end:
                m = _map_state(page)
                total = total or _rows(home, data)
                valued = m["n"] > 0 and m["colour"] == "value" and not m["stale"]
                if valued and out["first map"] is None:
                    out["first map"] = time.time() - t0
                    out["first map points"] = m["n"]
                    print(f"  app: first map, {m['n']:,} points, {out['first map']:.0f} s", file=sys.stderr, flush=True)
                if out["full valuation"] is None and (f := _full_valued_at(home)) is not None:
                    out["full valuation"] = f - t0
                    print(f"  app: full valuation, {out['full valuation']:.0f} s", file=sys.stderr, flush=True)
                # every row on the map (not a preliminary sample's), coloured by value, nothing preliminary shown
                if valued and total is not None and m["n"] == total and not m["banner"]:
                    out["full map"] = time.time() - t0
                    out["full map points"] = m["n"]
                    print(f"  app: full map, {m['n']:,} points, {out['full map']:.0f} s", file=sys.stderr, flush=True)
                    break
                page.wait_for_timeout(500)
            out["rows"] = total
            browser.close()
    finally:
        stop(proc, timeout=15)
    return out


def run_cli(home: Path, sample: int, data: str) -> dict[str, float | None]:
    env = _env(home)
    t0 = time.time()

    def step(*argv: str) -> float:
        subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"  cli: {' '.join(argv)}, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        return time.time() - t0

    out: dict[str, float | None] = {}
    step("value", data, "--limit", str(sample))
    out["first map"] = step("project", data, "--limit", str(sample), "--no-predictions")
    out["full valuation"] = step("value", data)
    out["full map"] = step("project", data, "--no-predictions")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--cold", action="store_true", help="empty embedding cache: a newcomer's real first run "
                      "(the default)")
    mode.add_argument("--warm-cache", action="store_true", help="start with the embedding cache of --cache-from")
    p.add_argument("--cache-from", default=os.environ.get("WINNOW_HOME") or "workspace",
                   help="a WINNOW_HOME whose cache/ holds the demo's embeddings (default $WINNOW_HOME, else ./workspace)")
    p.add_argument("--data", default="demo", help="dataset (default demo)")
    p.add_argument("--sample", type=int, default=4000,
                   help="rows of the CLI floor's first map (default: as many as the app's first map showed, else 4000)")
    p.add_argument("--timeout", type=float, default=3600, help="give up on the app after this many seconds")
    p.add_argument("--installed-kernels", action="store_true",
                   help="use this install's compiled UMAP kernels (numba's cache) instead of simulating a fresh "
                        "install (an empty NUMBA_CACHE_DIR and the README's set-up step `core warm-up`, timed)")
    p.add_argument("--skip-app", action="store_true")
    p.add_argument("--skip-cli", action="store_true")
    args = p.parse_args()
    warm = Path(args.cache_from) if args.warm_cache else None
    if warm is not None and not (warm / "cache").is_dir():
        p.error(f"--warm-cache: {warm / 'cache'} does not exist; pass --cache-from a WINNOW_HOME that holds the "
                "demo's embedding cache (e.g. /work/demo-ws)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_first_run_"))
    load0 = os.getloadavg()
    fresh = not args.installed_kernels
    setup: dict[str, float | None] = {}
    app: dict[str, float | None] = {}
    cli: dict[str, float | None] = {}
    if not args.skip_app:
        setup["app"] = _fresh(tmp / "app", warm, fresh)
        app = run_app(tmp / "app", args.timeout, args.data)
    if not args.skip_cli:
        setup["cli"] = _fresh(tmp / "cli", warm, fresh)
        sample = int(app.get("first map points") or args.sample)  # the floor maps as many rows as the app's sample
        cli = run_cli(tmp / "cli", sample, args.data)
    load1 = os.getloadavg()
    print(f"## First run of `{args.data}` ({'warm' if warm else 'cold'} embedding cache, "
          f"{'a fresh install: empty numba cache' if fresh else 'UMAP kernels already compiled'}), "
          f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f}, {os.cpu_count()} CPUs")
    print()
    print("| stage | app (s, from the click) | CLI floor (s, one step after the other) | goal |")
    print("|---|---|---|---|")
    goals = {"first map": "60 s", "full valuation": "", "full map": "240 s"}

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.0f}"

    if fresh:
        print(f"| set-up: `core warm-up` (README's first command, before the app opens) | {fmt(setup.get('app'))} | "
              f"{fmt(setup.get('cli'))} |  |")
    for stage in ("first map", "full valuation", "full map"):
        print(f"| {stage} | {fmt(app.get(stage))} | {fmt(cli.get(stage))} | {goals[stage]} |")
    if app:
        print()
        print(f"App: the first map showed {app.get('first map points') or 'no'} points coloured by value; the full map "
              + (f"{app['full map points']:,} of {app['rows']:,} rows (no preliminary banner)."
                 if app.get("full map") is not None else
                 f"never showed all {app.get('rows') or '?'} rows within --timeout {args.timeout:.0f} s."))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
