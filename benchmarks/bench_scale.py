"""Scale benchmark: valuation, k-means and UMAP at 10k, 100k (and 1M) rows; seconds and peak RSS; Dask speed-up.

Data (SYNTHETIC, labelled as such in the table): vectors drawn around real ones. The anchors are the real MiniLM
embeddings of the demo tweets (`--real`, default the demo workspace's embeddings, with the dataset's labels); each
synthetic row is a random anchor plus Gaussian noise (`--noise-sd`), L2-normalised, carrying the anchor's label, and a
seeded `--flip` share of the labels is flipped. Validation: `--valid-n` further synthetic rows (unflipped). Every
(size, step) runs in its own process so its VmHWM (/proc/self/status) is that step's peak RSS
(including the data it was handed: the train matrix is memory-mapped from a temp .npy, as the app hands it out).
The time exponent is the least-squares slope of log(seconds) over log(rows) per step (needs two sizes or more).
Steps: knn-shapley, label-quality, ts-dshapley (valuation, ROC-AUC of the flipped rows; each reports its progress
and checkpoints its partial values into a workspace as the app's job does), kmeans (`fit_clusters`,
automatic k; past 200,000 rows a sample fit and every row labelled in chunks) and umap (`project`: every row up to
--max-fit, past it a sample fit and the rest transformed in chunks).

`--cluster` adds the Dask comparison on this machine: embedding `--cluster-texts` real demo texts (MiniLM, a fresh
cache each time) and TS-DShapley on `--cluster-rows` synthetic rows, each (a) here on one thread, (b) on a
`LocalCluster` of 1 single-threaded worker process and (c) of 2; speed-up = (b) / (c), the scheduler's overhead =
(b) - (a). Values and vectors are checked equal across the three. `--ceiling` also times two plain runs side by side
in two processes: 2 x (a) / their wall time is what two cores give two copies of the work on this machine, the most
any scheduler could reach.

    nice -n 10 python benchmarks/bench_scale.py --sizes 10000            # what a busy machine can afford
    nice -n 10 python benchmarks/bench_scale.py                          # 10k and 100k
    nice -n 10 python benchmarks/bench_scale.py --million                # adds 1,000,000 rows
    nice -n 10 python benchmarks/bench_scale.py --sizes 0 --cluster      # only the LocalCluster comparison

Prints a markdown table with the load average in its header line.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core per step: seconds = seconds on one core

import numpy as np  # noqa: E402

DEMO = Path(os.environ.get("WINNOW_HOME") or "workspace")  # a workspace holding the demo's embeddings
STEPS = ("knn-shapley", "label-quality", "ts-dshapley", "kmeans", "umap")
VALUATION = ("knn-shapley", "label-quality", "ts-dshapley")


def real_anchors(path: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(real vectors, integer labels, description). `path`: an .npz with X and y, else the demo workspace."""
    if path and path.endswith(".npz"):
        z = np.load(path)
        return np.asarray(z["X"], np.float32), np.asarray(z["y"], np.int64), path
    home = Path(path) if path else DEMO
    embs = sorted((home / "embeddings").glob("*.npy"))
    if not embs or not (home / "READY").exists():
        sys.exit(f"bench_scale: no real embeddings at {home}/embeddings (READY missing); pass --real FILE.npz with "
                 "arrays X (n, d) and y (n,)")
    X = np.load(embs[0], mmap_mode="r")
    from datasets import load_from_disk

    ds = load_from_disk(str(next((home / "datasets").glob("*/data"))))
    labels = np.asarray(ds["label"])
    if len(labels) != len(X):
        sys.exit(f"bench_scale: {embs[0]} has {len(X)} rows but the dataset {len(labels)}")
    _, y = np.unique(labels, return_inverse=True)
    return np.asarray(X, np.float32), y.astype(np.int64), f"{len(X):,} real MiniLM vectors of {home}"


def synthetic(anchors: np.ndarray, labels: np.ndarray, n: int, *, noise_sd: float, flip: float,
              seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n vectors around random real anchors (float32, unit norm), their labels with a seeded share flipped, and
    the flipped mask."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(anchors), size=n)
    X = np.empty((n, anchors.shape[1]), dtype=np.float32)
    for s in range(0, n, 100_000):  # in blocks: no float64 copy of the whole matrix
        e = min(n, s + 100_000)
        block = anchors[pick[s:e]] + rng.normal(0.0, noise_sd, size=(e - s, anchors.shape[1])).astype(np.float32)
        X[s:e] = block / np.linalg.norm(block, axis=1, keepdims=True)
    y = labels[pick].copy()
    n_classes = int(labels.max()) + 1
    flipped = np.zeros(n, dtype=bool)
    idx = rng.choice(n, size=int(round(flip * n)), replace=False)
    flipped[idx] = True
    y[idx] = (y[idx] + rng.integers(1, n_classes, size=len(idx))) % n_classes
    return X, y, flipped


def peak_mib() -> float:
    """This process's peak RSS in MiB: VmHWM of /proc/self/status (the high-water mark of this program's own memory;
    ru_maxrss would also count the parent's resident memory at fork), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux


def _app_progress(path: Path):
    """on_progress as the app's valuation job hands it: partial values checkpointed into a workspace (at most every
    2 s, `core.valuation.store.Checkpointer`), so the seconds include what resumability costs."""
    from core import runs
    from core.valuation.store import Checkpointer
    from core.workspace import Workspace

    ws = Workspace(path)
    with runs.recorded(ws, "values", dataset_id=None, method="bench", params={}) as run:
        run.done({}, seconds=0.0)
    ck = Checkpointer(ws, run.id)

    def fn(fraction: float, message: str = "", partial=None) -> None:
        if partial is not None:
            ck(partial, fraction)
    return fn


def run_one(args: argparse.Namespace) -> None:
    """Child process: one step on the prepared files; prints one JSON line."""
    from core.valuation.base import Split

    d = Path(args.one_dir)
    X = np.load(d / "X.npy", mmap_mode="r")
    y = np.load(d / "y.npy")
    Xv, yv = np.load(d / "Xv.npy"), np.load(d / "yv.npy")
    flipped = np.load(d / "flipped.npy")
    train = Split(np.array([f"r{i}" for i in range(len(y))]), X, y)
    valid = Split(np.array([f"v{i}" for i in range(len(yv))]), Xv, yv)
    progress = _app_progress(d / f"ws-{args.one}") if args.one in VALUATION else None
    t0 = time.perf_counter()
    if args.one not in VALUATION:
        extra = ""
        if args.one == "kmeans":
            from core.selection import fit_clusters

            cl = fit_clusters(X, seed=0)
            extra = f"k = {cl.k}, {cl.method}"
        else:
            from core.projection import project

            coords = project(X, method="umap", seed=0, max_fit=args.max_fit)
            assert np.isfinite(coords).all()
            extra = f"UMAP fit on {min(len(X), args.max_fit):,} rows"
        seconds = time.perf_counter() - t0
        peak = peak_mib()
        print(json.dumps({"seconds": seconds, "peak_mib": peak, "auc": float("nan"), "note": extra}))
        return
    if args.one == "knn-shapley":
        from core.valuation.knn_shapley import knn_shapley
        vals = knn_shapley(train, valid=valid, on_progress=progress)
    elif args.one == "label-quality":
        from core.valuation.label_quality import label_quality
        vals = label_quality(train, seed=0, on_progress=progress)
    else:
        from core.valuation.ts_dshapley import ts_dshapley
        vals = ts_dshapley(train, valid=valid, seed=0, n_jobs=1, on_progress=progress)
    seconds = time.perf_counter() - t0
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(flipped, -np.nan_to_num(vals.values)))
    peak = peak_mib()
    print(json.dumps({"seconds": seconds, "peak_mib": peak, "auc": auc}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="rows, comma-separated (default 10000,100000)")
    ap.add_argument("--million", action="store_true", help="add 1,000,000 rows")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"subset of {','.join(STEPS)}")
    ap.add_argument("--real", default=None, help="workspace folder (default $WINNOW_HOME, else ./workspace) or .npz with X, y")
    ap.add_argument("--valid-n", type=int, default=1000, help="validation rows (default 1000)")
    ap.add_argument("--noise-sd", type=float, default=0.02, help="per-dimension noise around an anchor (0.02)")
    ap.add_argument("--flip", type=float, default=0.1, help="share of labels flipped (default 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-fit", type=int, default=100_000, help="umap step: rows UMAP is fitted on (default 100000)")
    ap.add_argument("--cluster", action="store_true", help="add the LocalCluster comparison (1 vs 2 workers)")
    ap.add_argument("--cluster-texts", type=int, default=4096,
                    help="real demo texts embedded per run (default 4096: 4 shards of 1,024)")
    ap.add_argument("--cluster-rows", type=int, default=5000, help="synthetic rows valued by TS-DShapley (5000)")
    ap.add_argument("--ceiling", action="store_true",
                    help="with --cluster: also time two plain TS-DShapley runs at once (this machine's own 2-core "
                         "speed-up, the most a LocalCluster could reach)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--one-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_one(args)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip() and int(s) > 0] + ([1_000_000] if args.million else [])
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    anchors, labels, what = real_anchors(args.real)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="winnow-bench-scale-") as tmp:
        Xv, yv, _ = synthetic(anchors, labels, args.valid_n, noise_sd=args.noise_sd, flip=0.0, seed=args.seed + 1)
        np.save(Path(tmp) / "Xv.npy", Xv)
        np.save(Path(tmp) / "yv.npy", yv)
        for n in sizes:
            X, y, flipped = synthetic(anchors, labels, n, noise_sd=args.noise_sd, flip=args.flip, seed=args.seed)
            np.save(Path(tmp) / "X.npy", X)
            np.save(Path(tmp) / "y.npy", y)
            np.save(Path(tmp) / "flipped.npy", flipped)
            del X
            for step in steps:
                cmd = [sys.executable, __file__, "--one", step, "--one-dir", tmp]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    tail = (res.stderr.strip().splitlines() or ["?"])[-1]
                    rows.append({"rows": n, "step": step, "seconds": float("nan"), "peak_mib": float("nan"),
                                 "auc": float("nan"), "error": tail})
                    continue
                got = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append({"rows": n, "step": step, **got})
                print(f"  {n:>9,} {step:<14} {got['seconds']:8.1f} s  {got['peak_mib']:8.0f} MiB  load "
                      f"{os.getloadavg()[0]:.2f}", file=sys.stderr)
        cluster_rows = cluster_comparison(args, anchors, labels, Path(tmp)) if args.cluster else []
    if rows:
        print_scale(args, rows, steps, what)
    if cluster_rows:
        print_cluster(args, cluster_rows)


def print_scale(args: argparse.Namespace, rows: list[dict], steps: list[str], what: str) -> None:
    load = os.getloadavg()
    print(f"\n### Scale (SYNTHETIC vectors around {what}; noise sd {args.noise_sd}, {args.flip:.0%} seeded flips, "
          f"{args.valid_n:,} validation rows; one core per step) - load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}\n")
    print("| rows | step | seconds | peak RSS (MiB) | ROC-AUC of flips |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        note = f" ({r['error']})" if r.get("error") else (f" ({r['note']})" if r.get("note") else "")
        auc = "n/a" if not np.isfinite(r["auc"]) else f"{r['auc']:.3f}"
        print(f"| {r['rows']:,} | {r['step']}{note} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {auc} |")
    print("\n| step | time exponent (seconds ~ rows^b) |")
    print("|---|---:|")
    for step in steps:
        pts = [(r["rows"], r["seconds"]) for r in rows if r["step"] == step and np.isfinite(r["seconds"])]
        if len(pts) >= 2:
            b = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]
            print(f"| {step} | {b:.2f} |")
        else:
            print(f"| {step} | n/a (one size) |")


# ------------------------------------------------------------------------------------- LocalCluster comparison
def _demo_texts(home: Path, n: int) -> list[str]:
    from datasets import load_from_disk

    ds = load_from_disk(str(next((home / "datasets").glob("*/data"))))
    return [str(t) for t in ds.select(range(min(n, len(ds))))["text"]]


def cluster_comparison(args: argparse.Namespace, anchors: np.ndarray, labels: np.ndarray, tmp: Path) -> list[dict]:
    """Embedding and TS-DShapley: here on one thread, on a LocalCluster of 1 and of 2 single-threaded workers."""
    os.environ["WINNOW_THREADS"] = "1"  # the Encoder here and in every worker process: one thread
    from dask.distributed import Client, LocalCluster

    from core.embed import embed_texts
    from core.valuation.base import Split
    from core.valuation.ts_dshapley import ts_dshapley

    out: list[dict] = []
    texts = _demo_texts(Path(args.real) if args.real and not args.real.endswith(".npz") else DEMO, args.cluster_texts)
    X, y, _ = synthetic(anchors, labels, args.cluster_rows, noise_sd=args.noise_sd, flip=args.flip, seed=args.seed)
    Xv, yv, _ = synthetic(anchors, labels, args.valid_n, noise_sd=args.noise_sd, flip=0.0, seed=args.seed + 1)
    train = Split(np.array([f"r{i}" for i in range(len(y))]), X, y)
    valid = Split(np.array([f"v{i}" for i in range(len(yv))]), Xv, yv)

    def embed(where: str | None, tag: str) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        V = embed_texts(texts, cache_dir=tmp / f"cache-{tag}", scheduler=where)
        return time.perf_counter() - t0, V

    def value(where: str | None) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        v = ts_dshapley(train, valid=valid, seed=0, n_jobs=1, scheduler=where)
        return time.perf_counter() - t0, v.values

    def warm() -> None:  # imports are not what is measured: torch, transformers, sklearn loaded before the clock
        import sklearn.linear_model  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401

        import core.embed  # noqa: F401
        import core.valuation.ts_dshapley  # noqa: F401

    warm()
    results: dict[str, dict[str, tuple[float, np.ndarray]]] = {"embedding": {}, "ts-dshapley": {}}
    results["embedding"]["here"] = embed(None, "here")
    results["ts-dshapley"]["here"] = value(None)
    for workers in (1, 2):
        t0 = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as c:
            start = time.perf_counter() - t0
            with Client(c.scheduler_address) as client:
                client.run(warm)
            print(f"  LocalCluster of {workers} started in {start:.1f} s", file=sys.stderr)
            results["embedding"][str(workers)] = embed(c.scheduler_address, f"w{workers}")
            results["ts-dshapley"][str(workers)] = value(c.scheduler_address)
    pair = _two_at_once(train, valid) if args.ceiling else None
    for step, r in results.items():
        same = all(np.array_equal(r["here"][1], r[k][1]) for k in ("1", "2"))
        here, one, two = r["here"][0], r["1"][0], r["2"][0]
        n = args.cluster_texts if step == "embedding" else args.cluster_rows
        ceiling = 2 * here / pair if pair and step == "ts-dshapley" else None
        out.append({"step": step, "n": n, "here": here, "one": one, "two": two, "same": same, "ceiling": ceiling})
        print(f"  {step}: here {here:.1f} s, 1 worker {one:.1f} s, 2 workers {two:.1f} s, same={same}",
              file=sys.stderr)
    return out


def _plain_ts(train, valid) -> float:
    from core.valuation.ts_dshapley import ts_dshapley

    t0 = time.perf_counter()
    ts_dshapley(train, valid=valid, seed=0, n_jobs=1)
    return time.perf_counter() - t0


def _two_at_once(train, valid) -> float:
    """Wall seconds of two plain one-thread TS-DShapley runs side by side in two processes (no Dask): what this
    machine's two cores give two independent copies of the work. 2 x (one run alone) / this is the best speed-up
    any scheduler could reach here."""
    import joblib

    with joblib.Parallel(n_jobs=2, backend="loky") as par:
        par(joblib.delayed(_plain_ts)(train, valid) for _ in range(2))  # workers started, imports done, warm
        t0 = time.perf_counter()
        each = par(joblib.delayed(_plain_ts)(train, valid) for _ in range(2))
        wall = time.perf_counter() - t0
    print(f"  two plain runs at once: {wall:.1f} s wall (each {each[0]:.1f} s, {each[1]:.1f} s)", file=sys.stderr)
    return wall


def print_cluster(args: argparse.Namespace, rows: list[dict]) -> None:
    load = os.getloadavg()
    print(f"\n### Dask LocalCluster: 2 single-threaded workers vs 1 (embedding: real demo texts, MiniLM, fresh "
          f"cache; TS-DShapley: SYNTHETIC rows as above) - load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{os.cpu_count()} CPUs\n")
    print("| step | rows | here, 1 thread (s) | LocalCluster 1 worker (s) | 2 workers (s) | speed-up 2 vs 1 | "
          "scheduler overhead (1 worker - here, s) | same output | this machine's ceiling (2 plain runs at once) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        ceiling = f"{r['ceiling']:.2f}x" if r.get("ceiling") else "n/a"
        print(f"| {r['step']} | {r['n']:,} | {r['here']:.1f} | {r['one']:.1f} | {r['two']:.1f} | "
              f"{r['one'] / r['two']:.2f}x | {r['one'] - r['here']:+.1f} | {'yes' if r['same'] else 'NO'} | "
              f"{ceiling} |")


if __name__ == "__main__":
    main()
