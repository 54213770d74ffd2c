"""Dask's worker heap: embedding shards and k-means labelling chunks in a LocalCluster worker, as plain tasks and
inside `core.chunked.task_heap`.

Dask's nanny starts every worker with MALLOC_TRIM_THRESHOLD_=65536, under which glibc hands memory back after nearly
every free and maps every larger block afresh. `task_heap` lifts the trim and mmap thresholds for one task. Each
repeat times the same work both ways, each in a fresh LocalCluster of one single-threaded worker (warmed by 64 texts
the same way), alternating which way goes first: `--texts` real demo texts embedded by MiniLM (a fresh cache each time,
shards of 1,024 as `core.embed` cuts them) and `--rows` SYNTHETIC rows labelled by a fitted MiniBatchKMeans in chunks
of 50,000 (`core.chunked.map_chunks`). "Plain" swaps Winnow's task functions for the same code without the heap. Both ways give identical output (checked).

    python benchmarks/bench_task_heap.py --real /tmp/demo-ws --repeats 2

Prints a markdown table with the load average in its header line.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["WINNOW_THREADS"] = "1"
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

import core.embed as embed  # noqa: E402


def plain_shard(spec, texts, batch_size):
    """`core.embed._embed_shard` without the task heap (what a worker ran before)."""
    encoder, lock = embed._worker_encoder(spec)
    with lock:
        X = encoder.encode(texts, batch_size=batch_size, warn=False)
        return X, encoder.last_lengths.copy()


def plain_predict(model, X):
    return model.predict(X)


def plain_call(func, model, X):
    """`core.chunked._heap_call` without the task heap (what a worker ran before)."""
    return func(model, X)


def main() -> None:
    import bench_scale as bs
    from dask.distributed import Client, LocalCluster
    from sklearn.cluster import MiniBatchKMeans

    from core import chunked

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", default=None, help="workspace holding the demo's embeddings (as bench_scale.py)")
    ap.add_argument("--texts", type=int, default=1024, help="demo texts embedded per run (default 1024)")
    ap.add_argument("--rows", type=int, default=200_000, help="synthetic rows labelled by k-means (default 200000)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    home = Path(args.real) if args.real else bs.DEMO
    texts = bs._demo_texts(home, args.texts)
    anchors, labels, _ = bs.real_anchors(args.real)
    X, _, _ = bs.synthetic(anchors, labels, args.rows, noise_sd=0.02, flip=0.1, seed=0)
    km = MiniBatchKMeans(128, random_state=0, n_init=1).fit(X[:20_000])
    chunks = chunked.row_chunks(len(X), 50_000)
    real_shard, real_call = embed._embed_shard, chunked._heap_call
    times: dict[tuple[str, str], list[float]] = {}
    outputs: dict[tuple[str, str], list] = {}
    for r in range(args.repeats):
        order = ("plain", "task heap") if r % 2 == 0 else ("task heap", "plain")
        for way in order:  # a fresh worker for each way: what one task leaves in the heap does not reach the other
            shard = plain_shard if way == "plain" else real_shard
            with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
                    tempfile.TemporaryDirectory() as tmp:
                with Client(c.scheduler_address) as client:
                    client.run(lambda: __import__("torch") and __import__("transformers"))
                embed._embed_shard = shard
                try:
                    embed.embed_texts(texts[:64], cache_dir=Path(tmp) / "warm", scheduler=c.scheduler_address)
                    t0 = time.perf_counter()
                    V = embed.embed_texts(texts, cache_dir=Path(tmp) / "c", scheduler=c.scheduler_address)
                    times.setdefault(("embedding", way), []).append(time.perf_counter() - t0)
                finally:
                    embed._embed_shard = real_shard
                outputs.setdefault(("embedding", way), []).append(V)
                chunked._heap_call = plain_call if way == "plain" else real_call
                try:
                    t0 = time.perf_counter()
                    got = chunked.map_chunks(plain_predict, km, X, chunks, scheduler=c.scheduler_address)
                    times.setdefault(("k-means labels", way), []).append(time.perf_counter() - t0)
                finally:
                    chunked._heap_call = real_call
                outputs.setdefault(("k-means labels", way), []).append(np.concatenate(got))
            print(f"  repeat {r + 1}, {way}: embedding {times[('embedding', way)][-1]:.1f} s, k-means labels "
                  f"{times[('k-means labels', way)][-1]:.1f} s, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    load = os.getloadavg()
    print(f"\n### Dask worker heap: plain tasks vs `task_heap` (1 single-threaded LocalCluster worker, "
          f"MALLOC_TRIM_THRESHOLD_=65536 as Dask's nanny sets it; embedding: {args.texts:,} real demo texts, MiniLM; "
          f"k-means: {args.rows:,} SYNTHETIC rows, 128 clusters; {args.repeats} paired repeats) - load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs\n")
    print("| step | plain task, median s | in task_heap, median s | plain / task_heap | same output |")
    print("|---|---:|---:|---:|---|")
    for step in ("embedding", "k-means labels"):
        a, b = np.median(times[(step, "plain")]), np.median(times[(step, "task heap")])
        same = all(np.array_equal(p, q) for p, q in zip(outputs[(step, "plain")], outputs[(step, "task heap")]))
        print(f"| {step} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
