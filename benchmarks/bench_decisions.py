"""How fast the current decision state is read and undone, against replaying the log in Python (the old reader).

Registers the demo's 38,158 uids as a dataset in a fresh workspace, records `--decisions` decision events in
batches like the app makes them (lassos of a few hundred rows, single keys, some relabels and clears, some undos),
then times, in one run and on the same workspace:

- one read of the current state through `core.decisions.current` (cold: after a change; warm: unchanged),
- the same state by replaying the whole log in Python (what every reader did before: the peer),
- an undo of a `--undo`-event batch (one transaction) against undoing the same events one by one.

    python benchmarks/bench_decisions.py                     # 40,000 decisions, undo of 5,000
    python benchmarks/bench_decisions.py --decisions 4000 --undo 500 --repeat 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core import decisions  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def _replay(ws: Workspace, dataset_id: int) -> dict[str, str]:
    """The reader every page used before: the whole log through Python, skipping undos and undone events."""
    log = ws.decision_log(dataset_id)
    undone = {e.undoes for e in log if e.action == "undo"}
    state: dict[str, str] = {}
    for e in log:
        if e.action == "undo" or e.id in undone:
            continue
        if e.action == "clear":
            state.pop(e.uid, None)
        else:
            state[e.uid] = e.action
    return state


def _demo_uids(n: int | None) -> list[str]:
    from core import data
    with tempfile.TemporaryDirectory() as tmp:
        loaded = data.open_dataset(Workspace(tmp), "demo", limit=n)
        return [str(u) for u in loaded.ds["uid"]]


def _record(ws: Workspace, ds: int, uids: list[str], n_events: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    written = 0
    while written < n_events:
        kind = rng.random()
        if kind < 0.5:  # a lasso of up to 400 rows
            size = int(min(n_events - written, rng.integers(20, 400)))
            ws.decide(ds, list(rng.choice(uids, size=size, replace=False)), "remove", reason="lasso", source="lasso")
        else:
            size = 1
            action = str(rng.choice(["remove", "keep", "relabel", "clear"], p=[0.55, 0.25, 0.15, 0.05]))
            ws.decide(ds, [str(rng.choice(uids))], action, reason="key", note="positive" if action == "relabel" else "")
            if rng.random() < 0.05:
                ws.undo_last(ds)
        written += size


def _ms(f, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=40_000, help="decision events to record")
    ap.add_argument("--undo", type=int, default=5_000, help="events in the batch that is undone")
    ap.add_argument("--lasso", type=int, default=23_035, help="rows of the big lasso removed and undone (23035: the "
                    "Map benchmark's lasso of half the UMAP map)")
    ap.add_argument("--rows", type=int, default=None, help="demo rows (default: all 38,158)")
    ap.add_argument("--repeat", type=int, default=5, help="timings per figure (the median is printed)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    uids = _demo_uids(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ds = ws.register_dataset(name="demo", source="demo", fingerprint="bench", n_rows=len(uids),
                                 classes=["negative", "neutral", "positive"], text_col="text", label_col="label",
                                 meta={})
        _record(ws, ds, uids, args.decisions, args.seed)
        n_events = len(ws.decision_log(ds))

        load = os.getloadavg()[0]
        print(f"{dt.datetime.now():%Y-%m-%d %H:%M} | {platform.machine()} | {os.cpu_count()} CPUs | load {load:.2f} | "
              f"python {platform.python_version()} | numpy {np.__version__} | sqlite {__import__('sqlite3').sqlite_version}"
              f" | median of {args.repeat}")
        print()
        print("| step | rows | events in log | Winnow ms | replay in Python ms (peer) | speed-up |")
        print("|---|---:|---:|---:|---:|---:|")

        def cold() -> decisions.DecisionState:
            decisions._cache.clear()
            return decisions.current(ws, ds)

        rng = np.random.default_rng(args.seed + 1)

        def after(size: int):
            def f() -> decisions.DecisionState:
                decisions.current(ws, ds)  # cached at the version before the change
                ws.decide(ds, list(rng.choice(uids, size=size, replace=False)), "remove", source="lasso")
                t = time.perf_counter()
                decisions.current(ws, ds)
                return time.perf_counter() - t
            return f

        cold_ms, state = _ms(cold, args.repeat)
        warm_ms, _ = _ms(lambda: decisions.current(ws, ds), args.repeat)
        one = statistics.median([after(1)() * 1000 for _ in range(args.repeat)])
        lasso = statistics.median([after(400)() * 1000 for _ in range(args.repeat)])
        state = decisions.current(ws, ds)
        n_events = len(ws.decision_log(ds))
        replay_ms, replayed = _ms(lambda: _replay(ws, ds), args.repeat)
        assert dict(zip(state.frame["uid"], state.frame["action"])) == replayed, "the two readers disagree"
        decided = len(state.frame)
        for what, ms in [("first read in a process (whole state)", cold_ms),
                         ("read after one key press (X on Inspect)", one),
                         ("read after a 400-row lasso Remove", lasso),
                         ("read again, nothing changed (cached by version)", warm_ms)]:
            print(f"| {what} | {decided:,} decided | {n_events:,} | {ms:.2f} | {replay_ms:.1f} | "
                  f"{replay_ms / ms:.0f}x |")

        # a big lasso's Remove, then its Undo: the app's writer (one event per row in uid order, the cached state
        # brought up to date from the batch) beside the same rows written in the order given and read again, both
        # on this workspace, alternating; each followed by the read the next page run makes
        big = min(args.lasso, len(uids))
        rec, given, und = [], [], []
        for r in range(args.repeat):
            rows = list(rng.choice(uids, size=big, replace=False))
            for writer in (("given", "record") if r % 2 else ("record", "given")):
                decisions.current(ws, ds)
                t = time.perf_counter()
                if writer == "record":
                    decisions.record(ws, ds, rows, "remove", reason="lasso", source="lasso")
                else:
                    ws.decide(ds, rows, "remove", reason="lasso", source="lasso")
                decisions.current(ws, ds)
                (rec if writer == "record" else given).append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                decisions.undo_last(ws, ds)
                decisions.current(ws, ds)
                und.append((time.perf_counter() - t) * 1000)
        r_ms, g_ms = statistics.median(rec), statistics.median(given)
        print(f"| Remove a {big:,}-row lasso + the next read: uid order, state merged (peer: order given, read) | "
              f"{big:,} | {len(ws.decision_log(ds)):,} | {r_ms:.0f} | {g_ms:.0f} | {g_ms / r_ms:.1f}x |")
        print(f"| Undo that lasso + the next read | {big:,} | {len(ws.decision_log(ds)):,} | "
              f"{statistics.median(und):.0f} | - | - |")

        batch = list(uids[: args.undo])
        ws.decide(ds, batch, "remove", reason="bench batch", source="lasso")
        t = time.perf_counter()
        undone = decisions.undo_last(ws, ds)
        batch_ms = (time.perf_counter() - t) * 1000
        assert len(undone) == args.undo
        ids = ws.decide(ds, batch, "remove", reason="bench batch, one by one", source="lasso")
        t = time.perf_counter()
        for i in ids:
            ws.undo(i)
        single_ms = (time.perf_counter() - t) * 1000
        print(f"| undo a batch (one transaction) vs one event at a time | {args.undo:,} | {len(ws.decision_log(ds)):,} | "
              f"{batch_ms:.0f} | {single_ms:.0f} | {single_ms / batch_ms:.0f}x |")


if __name__ == "__main__":
    main()
