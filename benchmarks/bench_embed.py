"""Embedding benchmark: Winnow's encoder (exact and fast path) against sentence-transformers on the same model.

Texts per second of `SentenceTransformer.encode()` (the packaged all-MiniLM-L6-v2 folder), `core.embed.Encoder`
float32 (exact) and `precision="int8"` (fast path), on `--n` demo tweets and `--n` SST-2 train sentences (seeded
samples), all in one run; the model load is not timed. Methods alternate within each repeat and the fastest of
`--repeat` runs counts, so a burst of load from other processes hurts one sample, not the comparison. Cosine: each
text's vector against sentence-transformers' vector of the same text (mean and min over the texts).
`--full-demo` (on by default) also embeds all 38,158 demo tweets with the exact path through `embed_texts` into a
fresh cache (model load, tokenization and cache writes included), then reads them back from the cache.

    python benchmarks/bench_embed.py                      # on a quiet machine: check `uptime` first
    python benchmarks/bench_embed.py --n 1000 --no-full-demo --repeat 1
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core import embed  # noqa: E402

SST2 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sst2" / "train.tsv"


def demo_texts() -> list[str]:
    from core.data import demo_path

    with open(demo_path(), encoding="latin-1", newline="") as f:
        return [row["text"] for row in csv.DictReader(f)]


def sst2_texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[0] for r in rows[1:]]


def sample(texts: list[str], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)), replace=False)]


def versions() -> str:
    out = []
    for pkg in ("torch", "transformers", "tokenizers", "sentence-transformers", "numpy", "onnxruntime"):
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(out)


def timed(fn, texts: list[str]) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    X = np.asarray(fn(texts), dtype=np.float32)
    return time.perf_counter() - t0, X


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="texts per data set (default 5000)")
    ap.add_argument("--batch-size", type=int, default=embed.BATCH_SIZE,
                    help=f"Winnow's batch size (default {embed.BATCH_SIZE})")
    ap.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' batch size (its default 32)")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per method; the fastest counts (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sst2", type=Path, default=SST2, help="SST-2 train.tsv")
    ap.add_argument("--full-demo", action=argparse.BooleanOptionalAction, default=True,
                    help="also embed all 38,158 demo tweets (exact path, through the cache)")
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    load0 = os.getloadavg()
    path = embed.default_model_path()
    exact = embed.Encoder()
    fast = embed.Encoder(precision="int8")
    st = SentenceTransformer(path, device="cpu")
    print(f"{dt.datetime.now():%Y-%m-%d %H:%M} | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()} | load {load0[0]:.2f} | {versions()} | "
          f"model {embed.DEFAULT_MODEL} (window {exact.max_length}) | batch {args.batch_size} (ST {args.st_batch_size})"
          f" | best of {args.repeat}")

    data = {"demo tweets": sample(demo_texts(), args.n, args.seed)}
    if args.sst2.exists():
        data["SST-2 train"] = sample(sst2_texts(args.sst2), args.n, args.seed)
    else:
        print(f"(SST-2 skipped: {args.sst2} not found)", file=sys.stderr)

    methods = {
        "sentence-transformers encode()": lambda t: st.encode(t, batch_size=args.st_batch_size),
        "Winnow exact (float32)": lambda t: exact.encode(t, batch_size=args.batch_size, warn=False),
        "Winnow fast (int8)": lambda t: fast.encode(t, batch_size=args.batch_size, warn=False),
    }
    for fn in methods.values():  # warm up (first-call allocations, quantised kernels)
        fn(["warm up the model", "a second, slightly longer text to warm up"] * 16)

    rows = []
    for name, texts in data.items():
        best: dict[str, float] = {}
        vecs: dict[str, np.ndarray] = {}
        for _ in range(max(1, args.repeat)):
            for m, fn in methods.items():
                seconds, X = timed(fn, texts)
                best[m] = min(best.get(m, float("inf")), seconds)
                vecs[m] = X
        ref = vecs["sentence-transformers encode()"]
        base = len(texts) / best["sentence-transformers encode()"]
        for m in methods:
            cos = (vecs[m] * ref).sum(1)
            rate = len(texts) / best[m]
            rows.append((name, m, len(texts), best[m], rate, rate / base, cos.mean(), cos.min()))

    if args.full_demo:
        texts = demo_texts()
        with tempfile.TemporaryDirectory() as cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds, X = timed(lambda t: embed.embed_texts(t, cache_dir=cache, batch_size=args.batch_size), texts)
                rows.append(("demo, all rows", "Winnow exact, cold cache (load + embed + write)", len(texts), seconds,
                             len(texts) / seconds, float("nan"), float("nan"), float("nan")))
                seconds2, X2 = timed(lambda t: embed.embed_texts(t, cache_dir=cache), texts)
            assert np.array_equal(X, X2), "the cache returned other vectors than it was given"
            rows.append(("demo, all rows", "Winnow, warm cache (no model load)", len(texts), seconds2,
                         len(texts) / seconds2, float("nan"), float("nan"), float("nan")))

    print()
    print("| data | method | n | seconds | texts/s | vs ST | cos vs ST (mean) | cos vs ST (min) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, m, n, s, rate, rel, cmean, cmin in rows:
        rel_s = "" if np.isnan(rel) else f"{rel:.2f}x"
        cm = "" if np.isnan(cmean) else f"{cmean:.6f}"
        cn = "" if np.isnan(cmin) else f"{cmin:.6f}"
        print(f"| {name} | {m} | {n:,} | {s:.2f} | {rate:,.0f} | {rel_s} | {cm} | {cn} |")
    load1 = os.getloadavg()
    print(f"\n(load average at the end: {load1[0]:.2f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
