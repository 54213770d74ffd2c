"""Idle CPU of the Streamlit server with a tab open, no job running, while something writes under the app folder.

The README's layout puts `.venv` inside the app folder, where Streamlit's file watcher (if on) watches it: a
`pip install` then floods the watcher. This copies the app (tracked files, with its `.streamlit/config.toml`) to a
temp folder, adds a `.venv/` there, opens the Data page in chromium (Playwright) on a small demo workspace, then for
`--seconds` (30) a writer creates, rewrites and deletes files under `.venv/` (`--rate` per second) while psutil
measures the server process's CPU time (children included). The peer row runs the same with the watcher forced on
(`--server.fileWatcherType auto`, Streamlit's default without a config file). Goal: <= 1 % of a core.

    python benchmarks/bench_idle.py
    python benchmarks/bench_idle.py --seconds 10 --rate 500
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def copy_app(dest: Path) -> Path:
    """The app's tracked and untracked-but-not-ignored files (what a user's checkout holds), plus `.venv/`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    (dest / ".venv" / "lib" / "site-packages").mkdir(parents=True, exist_ok=True)
    return dest


def writer(folder: Path, rate: float, stop: threading.Event, counter: list[int]) -> None:
    """Create, rewrite and delete small files under `folder` at about `rate` operations per second (a pip install)."""
    i = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        pkg = folder / f"pkg{i % 50}"
        pkg.mkdir(exist_ok=True)
        f = pkg / f"mod{i % 200}.py"
        f.write_text(f"x = {i}\n" * 20)
        if i % 3 == 0:
            f.unlink(missing_ok=True)
        i += 1
        counter[0] = i
        time.sleep(max(0.0, 1.0 / rate - (time.perf_counter() - t0)))


def measure(app_dir: Path, ws_path: Path, *, watcher: str | None, seconds: float, rate: float) -> dict:
    import psutil
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, FLAGS

    import _server

    log_path = app_dir.parent / f"idle-{watcher or 'config'}.log"
    proc, url = _server.start("app.py", cwd=app_dir, env={"WINNOW_HOME": str(ws_path)}, log_path=log_path, address=None,
                      args=("--server.fileWatcherType", watcher) if watcher is not None else ())
    try:
        ps = psutil.Process(proc.pid)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/")
            try:
                page.get_by_text("Rows per class").wait_for(timeout=300_000)
            except Exception:
                raise RuntimeError(f"the Data page did not show; server log: {log_path.read_text()[-3000:]}")
            page.wait_for_timeout(3000)  # let the first run settle

            def cpu() -> float:
                t = ps.cpu_times()
                total = t.user + t.system
                for c in ps.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        ct = c.cpu_times()
                        total += ct.user + ct.system
                return total

            stop, counter = threading.Event(), [0]
            th = threading.Thread(target=writer, args=(app_dir / ".venv" / "lib" / "site-packages", rate, stop,
                                                       counter), daemon=True)
            c0, t0 = cpu(), time.perf_counter()
            th.start()
            page.wait_for_timeout(seconds * 1000)
            stop.set()
            th.join()
            c1, t1 = cpu(), time.perf_counter()
            browser.close()
    finally:
        _server.stop(proc)
    text = log_path.read_text(errors="replace")
    return {"cpu": 100.0 * (c1 - c0) / (t1 - t0), "writes": counter[0], "seconds": t1 - t0,
            "overflow": text.count("Inotify queue overflowed") + text.count("inotify watch limit")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measuring window (default 30)")
    ap.add_argument("--rate", type=float, default=200.0, help="file operations per second under .venv (default 200)")
    ap.add_argument("--no-peer", action="store_true", help="skip the run with the file watcher forced on")
    args = ap.parse_args()

    from demo_workspace import build_workspace

    tmp = Path(tempfile.mkdtemp(prefix="winnow-idle-"))
    try:
        build_workspace(tmp / "ws", n=300)
        app_dir = copy_app(tmp / "app")
        config = app_dir / ".streamlit" / "config.toml"
        rows = []
        r = measure(app_dir, tmp / "ws", watcher=None, seconds=args.seconds, rate=args.rate)
        rows.append(("the app's own settings (" + (".streamlit/config.toml" if config.exists() else
                                                   "no .streamlit/config.toml: Streamlit's defaults") + ")", r))
        if not args.no_peer:
            r = measure(app_dir, tmp / "ws", watcher="auto", seconds=args.seconds, rate=args.rate)
            rows.append(("peer: file watcher forced on (--server.fileWatcherType auto)", r))
        load = os.getloadavg()
        print(f"{dt.datetime.now():%Y-%m-%d %H:%M} · {os.cpu_count()} CPUs, load average {load[0]:.1f} "
              f"{load[1]:.1f} {load[2]:.1f} · Python {platform.python_version()} · one chromium tab on the Data page, "
              f"no job · .venv/ inside the app folder, written {args.rate:.0f} times a second for "
              f"{args.seconds:.0f} s · goal <= 1 % of a core")
        print()
        print("| server settings | CPU, % of one core | file operations under .venv | watcher overflow lines in log |")
        print("|---|---|---|---|")
        for name, r in rows:
            print(f"| {name} | {r['cpu']:.1f} | {r['writes']:,} in {r['seconds']:.0f} s | {r['overflow']:,} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
