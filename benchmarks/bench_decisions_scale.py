"""Decisions at a million rows: a 200,000-row lasso removed, the state read, the removal undone, the curated set
exported; each beside a floor that does the least the step must do.

A SYNTHETIC workspace of `--rows` rows (tests/synthetic_map.py: a dataset of "synthetic row i" texts with labels,
as the large-map benchmark builds it; `--workdir` keeps and reuses it). The lasso's rows are the `--lasso` rows with
the smallest map x (one region, as a lasso draws it). Steps, each timed `--repeat` times (median), in one process:

- **Remove** the lasso's rows (`core.decisions.record`, one audit event per row, and the current state merged in);
  floor: the same rows inserted into a bare SQLite table with one `INSERT ... SELECT FROM json_each` (the least a
  write of one row per decision costs).
- **Read the state** in a fresh process's cache (`core.decisions.current` after the cache is dropped) and warm
  (unchanged); floor: `SELECT uid, action FROM` the bare table.
- **Undo** that batch (`core.decisions.undo_last`), then the state read after it.
- **Export** the curated rows (`core.export.export_dataset`, CSV and Parquet, with the manifest of the removed rows);
  floor: the same kept rows written by pandas `to_csv` / `to_parquet` straight from the dataset's columns.

Peak RSS is this process's VmHWM at the end. Prints a markdown table with the load average in its header line.

    python benchmarks/bench_decisions_scale.py --workdir /tmp/bd          # 1,000,000 rows, a 200,000-row lasso
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402


def _peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _timed(fn, repeat: int, before=None) -> float:
    """Median seconds of fn() over `repeat` runs; before() (untimed) runs ahead of each."""
    out = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--lasso", type=int, default=200_000, help="rows removed in one lasso (default 200000)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="keep (and reuse) the synthetic workspace here")
    args = ap.parse_args()

    from core import data, decisions, export
    from core.workspace import Workspace
    from synthetic_map import build_synthetic_workspace

    work = Path(args.workdir or tempfile.mkdtemp(prefix="winnow-bench-dec-"))
    path = work / f"ws-{args.rows}"
    t0 = time.perf_counter()
    if not (path / "winnow.db").exists():
        build_synthetic_workspace(path, args.rows)
        print(f"built {args.rows:,} rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    ws = Workspace(path)
    ds_id = int(ws.get_setting("active_dataset"))
    loaded = data.open_dataset(ws, f"ws:{ds_id}")
    ds = loaded.ds
    uids = np.asarray(data.column(ds, "uid"), dtype=object).astype(str)
    proj = ws.latest_run("projection", dataset_id=ds_id)
    frame = ws.load_run_frame(proj.id)
    x = dict(zip(frame["uid"].astype(str), frame["x"].to_numpy()))
    xs = np.array([x[u] for u in uids])
    lasso = uids[np.argsort(xs, kind="stable")[:args.lasso]].tolist()
    rows: list[tuple[str, str, float, float]] = []

    def undo_all() -> None:  # back to no decisions in force, so every repeat removes into the same state
        while decisions.current(ws, ds_id).removed:
            decisions.undo_last(ws, ds_id)
    undo_all()

    # -- Remove the lasso's rows, and its floor
    sec = _timed(lambda: decisions.record(ws, ds_id, lasso, "remove", reason="bench lasso", source="lasso"),
                 args.repeat, before=lambda: (undo_all(), decisions.current(ws, ds_id)))
    floor_db = sqlite3.connect(work / "floor.db")
    floor_db.execute("CREATE TABLE IF NOT EXISTS d(id INTEGER PRIMARY KEY, uid TEXT, action TEXT, time REAL)")
    listed = json.dumps(lasso)

    def floor_write() -> None:
        with floor_db:
            floor_db.execute("INSERT INTO d(uid, action, time) SELECT value, 'remove', ? FROM json_each(?)"
                             " ORDER BY key", (time.time(), listed))
    floor = _timed(floor_write, args.repeat, before=lambda: (floor_db.execute("DELETE FROM d"), floor_db.commit()))
    rows.append((f"Remove a {args.lasso:,}-row lasso", "decisions.record", sec, floor))

    # -- the state, read cold (a fresh process's cache) and warm
    def drop_cache() -> None:
        decisions._cache.clear()
    state = decisions.current(ws, ds_id)
    assert len(state.removed) == args.lasso, len(state.removed)
    cold = _timed(lambda: decisions.current(ws, ds_id), args.repeat, before=drop_cache)
    floor_write()
    floor_read = _timed(lambda: floor_db.execute("SELECT uid, action FROM d").fetchall(), args.repeat)
    rows.append((f"read the state ({args.lasso:,} decided), first read in a process", "decisions.current", cold,
                 floor_read))
    warm = _timed(lambda: decisions.current(ws, ds_id), args.repeat)
    rows.append(("read the state again, nothing changed", "decisions.current", warm, float("nan")))

    # -- Undo the lasso, and read after it
    def redo() -> None:
        undo_all()
        decisions.record(ws, ds_id, lasso, "remove", reason="bench lasso", source="lasso")
        decisions.current(ws, ds_id)
    sec = _timed(lambda: decisions.undo_last(ws, ds_id), args.repeat, before=redo)
    rows.append((f"Undo the {args.lasso:,}-row lasso", "decisions.undo_last", sec, float("nan")))
    after = _timed(lambda: decisions.current(ws, ds_id), 1)
    rows.append(("read the state after the undo", "decisions.current", after, float("nan")))

    # -- Export the curated set, and its floor
    redo()
    keep_mask = ~np.isin(uids, np.asarray(lasso))
    out = work / "exports"
    out.mkdir(exist_ok=True)
    for fmt, ext in (("csv", "csv"), ("parquet", "parquet")):
        target = out / f"curated.{ext}"
        sec = _timed(lambda: export.export_dataset(ws, ds_id, ds, fmt=fmt, out=target, overwrite=True), args.repeat)
        res = export.export_dataset(ws, ds_id, ds, fmt=fmt, out=target, overwrite=True)
        assert res.rows_after == args.rows - args.lasso, (res.rows_after, args.rows - args.lasso)
        df = ds.to_pandas()

        def floor_export() -> None:
            kept = df[keep_mask]
            if fmt == "csv":
                kept.to_csv(out / "floor.csv", index=False)
            else:
                kept.to_parquet(out / "floor.parquet", index=False)
        floor = _timed(floor_export, args.repeat)
        rows.append((f"export the curated {res.rows_after:,} rows as {fmt}, with its manifest",
                     "export.export_dataset", sec, floor))
    peak = _peak_mib()
    load = os.getloadavg()
    print(f"\n### Decisions at {args.rows:,} rows (SYNTHETIC workspace, tests/synthetic_map.py; a {args.lasso:,}-row "
          f"lasso; median of {args.repeat}) - load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} CPUs, peak RSS {peak:,.0f} MiB\n")
    print("| step | Winnow's call | Winnow s | floor s | Winnow / floor |")
    print("|---|---|---:|---:|---:|")
    for name, call, sec, fl in rows:
        ratio = f"{sec / fl:.1f}x" if np.isfinite(fl) and fl > 0 else "n/a"
        fls = f"{fl:.3f}" if np.isfinite(fl) else "n/a"
        print(f"| {name} | `{call}` | {sec:.3f} | {fls} | {ratio} |")


if __name__ == "__main__":
    main()
