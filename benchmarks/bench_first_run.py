"""A newcomer's first minutes on the demo: from an empty workspace to the first map coloured by value, the full
valuation and the full map, in the app (chromium through Playwright) and, side by side, the floor: the same work
run one step after the other from the CLI.

    python benchmarks/bench_first_run.py                 # cold: empty WINNOW_HOME, empty embedding cache
    python benchmarks/bench_first_run.py --warm-cache    # the embedding cache copied from --cache-from first

App: `streamlit run app.py` on a free loopback port with an empty WINNOW_HOME; the browser opens the Value page
(the first start loads the demo) and clicks Compute values (t = 0), then opens the Map and waits for its points
coloured by value (first map: the preliminary sample's), then for every row's map. "full valuation" is when the run
over every row was recorded (from the workspace). CLI floor: `value demo --limit N` + `project demo --limit N`
(the sample's map), then `value demo` and `project demo --no-predictions` over every row, in a second empty
workspace; each figure is the time since the first command started. Goals (issue 17): first map within 60 s of
the click, every row valued and mapped within 4 minutes. Prints a markdown table; the header carries the load.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _env(home: Path) -> dict[str, str]:
    return dict(os.environ, WINNOW_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))


def _fresh(home: Path, warm_from: Path | None) -> None:
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    if warm_from is not None:
        shutil.copytree(warm_from / "cache", home / "cache")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _points(page) -> int:
    return page.evaluate("() => { const g = document.querySelector('.js-plotly-plot');"
                         " return g && g._fullData && g._fullData.length ? g._fullData[0].x.length : -1; }")


def run_app(home: Path, timeout: float) -> dict[str, float | None]:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    log = open(home.parent / f"{home.name}-streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=_env(home), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, float | None] = {"first map": None, "full valuation": None, "full map": None}
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
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
            n_first = -1
            while time.time() < end:
                n = _points(page)
                if n > 0 and out["first map"] is None and page.get_by_text("Colour by").count():
                    out["first map"], n_first = time.time() - t0, n
                if out["full valuation"] is None and (f := _full_valued_at(home)) is not None:
                    out["full valuation"] = f - t0
                if out["first map"] is not None and n > n_first and page.get_by_text("Preliminary:").count() == 0:
                    out["full map"] = time.time() - t0
                    break
                if out["first map"] is not None and n == n_first and out["full valuation"] is not None \
                        and page.get_by_text("Preliminary:").count() == 0:  # no sample: the first map is the full
                    out["full map"] = out["first map"]
                    break
                page.wait_for_timeout(500)
            browser.close()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return out


def run_cli(home: Path, sample: int, data: str) -> dict[str, float | None]:
    env = _env(home)
    t0 = time.time()

    def step(*argv: str) -> float:
        subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.time() - t0

    out: dict[str, float | None] = {}
    step("value", data, "--limit", str(sample))
    out["first map"] = step("project", data, "--limit", str(sample), "--no-predictions")
    out["full valuation"] = step("value", data)
    out["full map"] = step("project", data, "--no-predictions")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warm-cache", action="store_true", help="start with the embedding cache of --cache-from")
    p.add_argument("--cache-from", default=os.environ.get("WINNOW_HOME") or "workspace",
                   help="a WINNOW_HOME whose cache/ holds the demo's embeddings (default $WINNOW_HOME, else ./workspace)")
    p.add_argument("--data", default="demo", help="dataset (default demo)")
    p.add_argument("--sample", type=int, default=4000, help="rows of the CLI floor's first map (default 4000)")
    p.add_argument("--timeout", type=float, default=3600, help="give up on the app after this many seconds")
    p.add_argument("--skip-app", action="store_true")
    p.add_argument("--skip-cli", action="store_true")
    args = p.parse_args()
    warm = Path(args.cache_from) if args.warm_cache else None
    tmp = Path(tempfile.mkdtemp(prefix="bench_first_run_"))
    load0 = os.getloadavg()
    app = {} if args.skip_app else (_fresh(tmp / "app", warm) or run_app(tmp / "app", args.timeout))
    cli = {} if args.skip_cli else (_fresh(tmp / "cli", warm) or run_cli(tmp / "cli", args.sample, args.data))
    load1 = os.getloadavg()
    print(f"## First run of `{args.data}` ({'warm' if warm else 'cold'} embedding cache), "
          f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f}, {os.cpu_count()} CPUs")
    print()
    print("| stage | app (s, from the click) | CLI floor (s, one step after the other) | goal |")
    print("|---|---|---|---|")
    goals = {"first map": "60 s", "full valuation": "", "full map": "240 s"}

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.0f}"

    for stage in ("first map", "full valuation", "full map"):
        print(f"| {stage} | {fmt(app.get(stage))} | {fmt(cli.get(stage))} | {goals[stage]} |")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
