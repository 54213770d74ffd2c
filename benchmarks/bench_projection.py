"""The map's projection on the demo's real embeddings: UMAP fitted on every row against UMAP fitted on a sample with
the rest transformed (`core.projection.project(max_fit=...)`), and the deterministic (seeded, one thread) path against
umap-learn's parallel unseeded one. Quality: scikit-learn's trustworthiness (k = `--k` neighbours, cosine) of each
map on one fixed, seeded evaluation sample of rows (the same rows for every path), set beside the full fit's.

    nice -n 10 python benchmarks/bench_projection.py                       # $WINNOW_HOME's demo embeddings
    python benchmarks/bench_projection.py --workspace /work/demo-ws --samples 2000 --rows 10000   # quicker

"Equal neighbourhood quality" here means a trustworthiness no more than `--tolerance` (0.01) below the full seeded
fit's. The embeddings are read (read-only) from the workspace's newest embedding of the dataset, exactly what
`python -m core project` maps; the fitting sample is class-stratified as in the app. UMAP's kernels are compiled
(or loaded from numba's disk cache) by a small warm-up fit first, so no row pays the compilation. Every path runs in
this one process, one after the other; the header line carries the load average.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402


def demo_embeddings(home: Path, name: str) -> tuple[np.ndarray, list[str]]:
    """(X (n, d) float32, labels) of dataset `name` in workspace `home`, aligned by row, read without writing."""
    db = home / "winnow.db"
    if not db.exists():
        sys.exit(f"bench_projection: error: {db} does not exist; pass --workspace a WINNOW_HOME whose dataset "
                 f"{name!r} is embedded (e.g. /work/demo-ws)")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        got = con.execute("SELECT e.relpath, d.source FROM embeddings e JOIN datasets d ON d.id = e.dataset_id "
                          "WHERE d.name = ? AND e.n_rows = d.n_rows ORDER BY e.id DESC", (name,)).fetchone()
    finally:
        con.close()
    if got is None:
        sys.exit(f"bench_projection: error: no embedding of every row of {name!r} in {db}; run "
                 f"`python -m core embed {name}` with WINNOW_HOME={home} first")
    X = np.load(home / got[0], mmap_mode="r")
    from core.data import load_dataset

    ds = load_dataset(name).ds
    labels = [str(v) for v in ds["label"]]
    if len(labels) != len(X):
        sys.exit(f"bench_projection: error: {len(X)} embedded rows but {len(labels)} rows in {name!r}")
    return np.asarray(X, dtype=np.float32), labels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", default=os.environ.get("WINNOW_HOME") or "workspace",
                    help="WINNOW_HOME holding the embedded dataset (default $WINNOW_HOME, else ./workspace)")
    ap.add_argument("--data", default="demo")
    ap.add_argument("--rows", type=int, default=0, help="map only the first N rows (0: all)")
    ap.add_argument("--samples", type=int, nargs="+", default=[2000, 4000, 8000],
                    help="fitting sample sizes of the sample-and-transform path")
    ap.add_argument("--eval-n", type=int, default=2000, help="rows of the trustworthiness evaluation sample")
    ap.add_argument("--k", type=int, default=10, help="neighbours for trustworthiness")
    ap.add_argument("--tolerance", type=float, default=0.01, help="'equal quality': at most this below the full fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-parallel", action="store_true", help="skip the unseeded parallel full fit")
    ap.add_argument("--skip-full", action="store_true", help="skip both full fits (compare with another run's)")
    args = ap.parse_args()

    from sklearn.manifold import trustworthiness

    from core import projection

    X, labels = demo_embeddings(Path(args.workspace), args.data)
    if args.rows:
        X, labels = X[:args.rows], labels[:args.rows]
    n = len(X)
    ev = np.sort(np.random.default_rng(12345).choice(n, size=min(args.eval_n, n), replace=False))
    t0 = time.perf_counter()
    projection.warm_up(X.shape[1])
    warm = time.perf_counter() - t0
    load0 = os.getloadavg()

    import umap

    rows: list[dict] = []

    def run(label: str, **kw) -> dict:
        t, c = time.perf_counter(), time.process_time()
        coords = projection.project(X, method="umap", strata=labels, **kw)
        sec, cpu = time.perf_counter() - t, time.process_time() - c
        tw = float(trustworthiness(X[ev], coords[ev], n_neighbors=args.k, metric="cosine"))
        r = {"path": label, "seconds": sec, "cpu": cpu, "trust": tw, "coords": coords, **kw}
        rows.append(r)
        print(f"  {label}: {sec:.1f} s ({cpu:.1f} CPU s), trustworthiness {tw:.4f}", file=sys.stderr, flush=True)
        return r

    for s in sorted(args.samples):
        if s < n:
            run(f"fit {s:,} (stratified) + transform {n - s:,}, seeded", seed=args.seed, max_fit=s)
    full = None if args.skip_full else run(f"fit all {n:,}, seeded (deterministic, one thread)", seed=args.seed,
                                           max_fit=n)
    if not args.skip_parallel and not args.skip_full:
        run(f"fit all {n:,}, unseeded (parallel, {os.cpu_count()} CPUs)", seed=None, max_fit=n)
    load1 = os.getloadavg()

    print(f"{time.strftime('%Y-%m-%d %H:%M')} · {args.data}, {n:,} rows x {X.shape[1]} · {os.cpu_count()} CPUs · "
          f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f} · umap-learn {umap.__version__} · n_neighbors 15, min_dist 0.1, cosine · trustworthiness "
          f"k = {args.k} on {len(ev):,} seeded rows · warm-up {warm:.0f} s (not counted)")
    print()
    print("| path | seconds | CPU seconds (all threads) | vs full seeded fit | trustworthiness | minus full fit's | "
          f"equal quality (within {args.tolerance}) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if full is None:
            print(f"| {r['path']} | {r['seconds']:.1f} | {r['cpu']:.1f} | n/a | {r['trust']:.4f} | n/a | n/a |")
            continue
        d = r["trust"] - full["trust"]
        print(f"| {r['path']} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['seconds'] / full['seconds']:.2f}x | "
              f"{r['trust']:.4f} | {d:+.4f} | {'yes' if d >= -args.tolerance else 'no'} |")
    if full is None:
        return 0
    ok = [r for r in rows if r.get("max_fit", n) < n and r["trust"] >= full["trust"] - args.tolerance
          and r["seconds"] < full["seconds"] and r["cpu"] < full["cpu"]]  # faster in wall and in CPU time
    print()
    if not any(r.get("max_fit", n) < n for r in rows):
        pass  # no sample-and-transform path in this run: nothing to decide
    elif ok:
        best = min(ok, key=lambda r: r["seconds"])
        print(f"Faster at equal quality: {best['path']} ({best['seconds']:.1f} s against {full['seconds']:.1f} s, "
              f"trustworthiness {best['trust']:.4f} against {full['trust']:.4f}).")
    else:
        print("No sample-and-transform path was both faster than the full fit (in wall and in CPU seconds) and "
              "within the tolerance of its trustworthiness: keep the full fit.")
    par = [r for r in rows if r.get("seed", 0) is None]
    if par:
        print(f"The deterministic path costs {full['seconds'] / par[0]['seconds']:.2f}x the parallel unseeded one "
              f"({full['seconds']:.1f} s against {par[0]['seconds']:.1f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
