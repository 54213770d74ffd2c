"""Fine-tuning benchmark: the TS-DShapley paper's experiment on SST-2, scaled to 2 CPU cores.

An SST-2 training pool (`--n` rows of train.tsv), once clean and once with `--noise` of its labels flipped, is
valued on MiniLM embeddings against a clean validation sample of dev.tsv; subsets at the same budget are chosen by
random sampling, TS-DShapley (the suggested removal, and the top values), consensus, KNN-Shapley, kMQ and iterative
refinement (Diversify and Conquer); each is fine-tuned (MiniLM, `--seeds` seeds) and scored on test.tsv (the GLUE
SST-2 dev set). Papers: Schoch, Mishra, Ji, arXiv 2306.10165; Diversify and Conquer, arXiv 2409.11378.

It first times the training loop against a plain `transformers.Trainer` on the same rows and model (examples/s),
estimates the whole run from that, and stops when the estimate exceeds `--max-minutes` (unless `--force`).

    nice -n 10 .venv/bin/python benchmarks/bench_finetune.py --n 5000 --epochs 1 --seeds 3

Prints a date/CPU/version line and markdown tables on stdout; progress on stderr. `--cache FILE` keeps finished
fine-tunes (JSON) so that an interrupted run resumes; nothing else is written.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core import finetune  # noqa: E402

SUBSETS = ("full", "random", "ts_removal", "ts_top", "consensus", "knn_shapley", "kmq", "iterative")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_tsv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype=str)
    return pd.DataFrame({"text": df["sentence"].str.strip(), "label": df["label"].str.strip()})


def embed(texts: list[str], model: str | None, threads: int) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM embeddings (core.embed when it is there, else the same pooling here)."""
    try:
        from core.embed import embed_texts

        return np.asarray(embed_texts(texts, model=model), dtype=np.float32)
    except (ImportError, TypeError):
        pass
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = model or finetune.default_model_path()
    tok, net = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    torch.set_num_threads(threads)
    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), net.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for s in range(0, len(texts), 128):
            rows = order[s:s + 128]
            enc = tok([texts[i] for i in rows], padding=True, truncation=True, max_length=128, return_tensors="pt")
            h = net(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            v = (h * m).sum(1) / m.sum(1)
            out[rows] = torch.nn.functional.normalize(v, dim=-1).numpy()
    return out


# ------------------------------------------------------------------------------------------------ throughput
def trainer_throughput(texts: list[str], labels: list[str], args: argparse.Namespace, *, group_by_length: bool
                       ) -> dict[str, float]:
    """A plain transformers.Trainer on the same rows, model and hyper-parameters: examples/s of train()."""
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    path = args.model or finetune.default_model_path()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path)
    classes = sorted(set(labels))
    ds = Dataset.from_dict({"text": texts, "label": [classes.index(v) for v in labels]})
    import datasets

    datasets.disable_progress_bars()
    ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=args.max_length), batched=True,
                remove_columns=["text"])
    torch.manual_seed(0)
    net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(classes))
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch_size, num_train_epochs=1,
                                  learning_rate=args.lr, warmup_steps=0.06, weight_decay=0.01, use_cpu=True,
                                  report_to=[], save_strategy="no", logging_strategy="no", seed=0,
                                  train_sampling_strategy="group_by_length" if group_by_length else "random",
                                  disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=net, args=targs, train_dataset=ds, data_collator=DataCollatorWithPadding(tok))
        t1 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its metrics dict
            out = trainer.train()
        t2 = time.perf_counter()
    return {"rows": len(texts), "seconds": t2 - t1, "wall": t2 - t0,
            "eps": len(texts) / (t2 - t1), "reported_eps": float(out.metrics.get("train_samples_per_second", 0))}


def ours_throughput(texts: list[str], labels: list[str], test: pd.DataFrame, args: argparse.Namespace
                    ) -> dict[str, float]:
    t0 = time.perf_counter()
    res = finetune.train_and_evaluate(texts, labels, test["text"].tolist()[:64], test["label"].tolist()[:64],
                                      classes=sorted(set(labels)), model=args.model, epochs=1,
                                      batch_size=args.batch_size, lr=args.lr, max_length=args.max_length, seed=0,
                                      valid_fraction=0.0, threads=args.threads)
    return {"rows": len(texts), "seconds": res.train_seconds, "wall": time.perf_counter() - t0,
            "eps": len(texts) / res.train_seconds, "step_eps": res.examples_per_second}


# ------------------------------------------------------------------------------------------------ subsets
def choose_subsets(X: np.ndarray, y: np.ndarray, uids: np.ndarray, valid, score, budget: int, wanted: list[str],
                   seed: int) -> tuple[dict[str, object], dict[str, object]]:
    """name -> uids (or a function seed -> uids for random), and diagnostics (values, suggestion, seconds)."""
    from core.selection import fit_clusters, select_iterative, select_kmq, select_random, select_top_value
    from core.valuation import METHODS, suggest_removal
    from core.valuation.base import Split
    from core.valuation.consensus import combine

    train = Split(uids, X, y)
    out: dict[str, object] = {}
    diag: dict[str, object] = {"seconds": {}}
    values = {}

    def value(name: str):
        if name not in values:
            t = time.perf_counter()
            values[name] = METHODS[name](train, valid=valid, seed=seed)
            diag["seconds"][name] = time.perf_counter() - t
            log(f"  {name}: {diag['seconds'][name]:.1f} s")
        return values[name]

    if "full" in wanted:
        out["full"] = uids
    if "random" in wanted:
        out["random"] = lambda s: select_random(uids, budget=budget, seed=1000 + s).uids
    if {"ts_removal", "ts_top", "kmq", "iterative", "consensus"} & set(wanted):
        value("ts_dshapley")
    if "ts_removal" in wanted:
        sug = suggest_removal(train, values["ts_dshapley"], valid=valid, score_on=score, seed=seed)
        drop = set(sug.uids.astype(str))
        out["ts_removal"] = np.array([u for u in uids if u not in drop])
        diag["suggestion"] = {"n_remove": sug.n_remove, "fraction": sug.fraction}
    if "ts_top" in wanted:
        out["ts_top"] = select_top_value(values["ts_dshapley"], budget=budget).uids
    if "knn_shapley" in wanted or "consensus" in wanted:
        value("knn_shapley")
    if "knn_shapley" in wanted:
        out["knn_shapley"] = select_top_value(values["knn_shapley"], budget=budget).uids
    if "consensus" in wanted:
        for m in ("label_quality", "data_oob"):
            value(m)
        values["consensus"] = combine([values[m] for m in ("label_quality", "knn_shapley", "data_oob",
                                                            "ts_dshapley")])
        out["consensus"] = select_top_value(values["consensus"], budget=budget).uids
    if "kmq" in wanted or "iterative" in wanted:
        t = time.perf_counter()
        clusters = fit_clusters(X, budget=budget, uids=uids, seed=seed)
        diag["k"] = clusters.k
        diag["seconds"]["clusters"] = time.perf_counter() - t
        if "kmq" in wanted:
            out["kmq"] = select_kmq(values["ts_dshapley"], clusters, budget=budget, seed=seed).uids
        if "iterative" in wanted:
            t = time.perf_counter()
            out["iterative"] = select_iterative(X, y, clusters, budget=budget, values=values["ts_dshapley"],
                                                seed=seed).uids
            diag["seconds"]["iterative"] = time.perf_counter() - t
    diag["values"] = values
    return out, diag


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="training pool rows from train.tsv")
    p.add_argument("--noise", type=float, default=0.1, help="fraction of labels flipped in the noisy pool")
    p.add_argument("--budget", type=float, default=0.7, help="subset size: a fraction of the pool or a count")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--valid-fraction", type=float, default=None,
                   help="early-stopping split of each subset (default: 0.1 when --epochs > 1, else 0)")
    p.add_argument("--valid-n", type=int, default=1000, help="dev.tsv rows the values are scored on")
    p.add_argument("--score-n", type=int, default=1000, help="other dev.tsv rows the removal index is chosen on")
    p.add_argument("--pools", default="noisy,clean")
    p.add_argument("--subsets", default=",".join(SUBSETS), help=f"of {','.join(SUBSETS)}")
    p.add_argument("--clean-subsets", default=None, help="subsets for the clean pool (default: --subsets)")
    p.add_argument("--trainer-n", type=int, default=800, help="rows of the throughput comparison (0: skip)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats of the throughput comparison")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the idle cores at start, at least 1; fixed for the whole run)")
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=45.0, help="stop if the estimate exceeds this")
    p.add_argument("--force", action="store_true", help="run even if the estimate exceeds --max-minutes")
    p.add_argument("--time-limit", type=float, default=None,
                   help="minutes after which no new fine-tune starts (the table shows what finished)")
    p.add_argument("--throughput-only", action="store_true")
    p.add_argument("--cache", default=None, help="JSON file of finished fine-tunes (resume an interrupted run)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "sst2"))
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = finetune._default_threads()
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # BLAS threads of the valuation too: oversubscribed threads crawl

    import sklearn
    import torch
    import transformers

    data = Path(args.data_dir)
    if not (data / "train.tsv").exists():
        print(f"SST-2 not found in {data}; nothing to benchmark", file=sys.stderr)
        return 1
    print(f"{datetime.date.today()} | {os.cpu_count()} CPUs ({args.threads} threads) | Python "
          f"{platform.python_version()} | torch {torch.__version__} | transformers {transformers.__version__} | "
          f"scikit-learn {sklearn.__version__} | numpy {np.__version__} | load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rng = np.random.default_rng(args.seed)
    train_all, dev, test = read_tsv(data / "train.tsv"), read_tsv(data / "dev.tsv"), read_tsv(data / "test.tsv")
    pool = train_all.iloc[np.sort(rng.choice(len(train_all), args.n, replace=False))].reset_index(drop=True)
    pool.insert(0, "uid", [f"t{i}" for i in range(len(pool))])
    dev_idx = rng.permutation(len(dev))
    valid_df = dev.iloc[dev_idx[:args.valid_n]].reset_index(drop=True)
    score_df = dev.iloc[dev_idx[args.valid_n:args.valid_n + args.score_n]].reset_index(drop=True)
    classes = sorted(set(pool["label"]))
    budget = int(round(args.budget * args.n)) if args.budget <= 1 else int(args.budget)
    valid_fraction = args.valid_fraction if args.valid_fraction is not None else (0.1 if args.epochs > 1 else 0.0)

    # ---- throughput: this loop vs a plain Trainer, same rows/model/batch/lr/max_length, one epoch
    eps = None
    if args.trainer_n:
        sub = pool.iloc[:args.trainer_n]
        texts, labels = sub["text"].tolist(), sub["label"].tolist()
        log(f"throughput on {len(texts)} rows (load {os.getloadavg()[0]:.1f})")
        names = {"ours": "core.finetune (length-grouped, dynamic padding)",
                 "trainer": "transformers.Trainer (dynamic padding)",
                 "trainer_grouped": "transformers.Trainer (dynamic padding, group_by_length)"}
        times: dict[str, list[float]] = {k: [] for k in names}
        for rep in range(args.repeats):  # interleaved: a shared machine's load drifts while we measure
            times["ours"].append(ours_throughput(texts, labels, test, args)["seconds"])
            try:
                for key, g in (("trainer", False), ("trainer_grouped", True)):
                    times[key].append(trainer_throughput(texts, labels, args, group_by_length=g)["seconds"])
            except (ImportError, RuntimeError) as e:  # Trainer needs `accelerate`
                log(f"Trainer skipped: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            log(f"  repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items() if v))
        eps = len(texts) / float(np.median(times["ours"]))
        print()
        print(f"Throughput: {len(texts)} SST-2 rows, 1 epoch, batch {args.batch_size}, max_length {args.max_length}, "
              f"{args.threads} thread(s), {args.repeats} interleaved repeats (train() only; examples/s = rows / "
              f"median seconds)")
        print()
        print("| trainer | seconds (each repeat) | examples/s (median) | examples/s (best) |")
        print("|---|---|---|---|")
        for key, name in names.items():
            if times[key]:
                t = times[key]
                print(f"| {name} | {' / '.join(f'{x:.1f}' for x in t)} | {len(texts) / np.median(t):.1f} | "
                      f"{len(texts) / min(t):.1f} |")
        if args.throughput_only:
            return 0

    pools = [s.strip() for s in args.pools.split(",") if s.strip()]
    wanted = {"noisy": [s.strip() for s in args.subsets.split(",") if s.strip()]}
    wanted["clean"] = [s.strip() for s in (args.clean_subsets or args.subsets).split(",") if s.strip()]
    for names in wanted.values():
        bad = set(names) - set(SUBSETS)
        if bad:
            p.error(f"unknown subsets {sorted(bad)}; use {','.join(SUBSETS)}")

    # ---- estimate
    if eps is None:
        r = ours_throughput(pool["text"].tolist()[:256], pool["label"].tolist()[:256], test, args)
        eps = r["eps"]
    n_rows = sum((args.n if s in ("full", "ts_removal") else budget) for pool_name in pools
                 for s in wanted[pool_name]) * args.seeds
    n_runs = sum(len(wanted[pool_name]) for pool_name in pools) * args.seeds
    eval_rows = n_runs * (len(test) + valid_fraction * args.n * args.epochs)
    minutes = (n_rows * (1 - valid_fraction) * args.epochs / eps + eval_rows / (3 * eps)) / 60
    log(f"estimate: {n_runs} fine-tunes, {n_rows:,} training rows x {args.epochs} epoch(s) at {eps:.1f} ex/s "
        f"-> about {minutes:.0f} min")
    print(f"\nEstimate before the run: {n_runs} fine-tunes, {n_rows:,} rows x {args.epochs} epoch(s) at "
          f"{eps:.1f} examples/s -> about {minutes:.0f} min")
    if minutes > args.max_minutes and not args.force:
        log(f"over --max-minutes {args.max_minutes:.0f}: shrink --n/--seeds/--subsets or pass --force")
        return 3

    # ---- embeddings
    os.environ.setdefault("WINNOW_THREADS", str(args.threads))
    t = time.perf_counter()
    X_all = embed(pool["text"].tolist() + valid_df["text"].tolist() + score_df["text"].tolist(), args.model,
                  args.threads)
    X, Xv, Xs = X_all[:args.n], X_all[args.n:args.n + len(valid_df)], X_all[args.n + len(valid_df):]
    log(f"embedded {len(X_all):,} texts in {time.perf_counter() - t:.0f} s")

    from core.valuation.audit import detection_scores, flip_labels
    from core.valuation.base import Split

    yv = np.array([classes.index(v) for v in valid_df["label"]])
    ys = np.array([classes.index(v) for v in score_df["label"]])
    valid = Split(np.array([f"v{i}" for i in range(len(yv))]), Xv, yv)
    score = Split(np.array([f"s{i}" for i in range(len(ys))]), Xs, ys)
    cache: dict[str, dict] = {}
    if args.cache and Path(args.cache).exists():
        cache = json.loads(Path(args.cache).read_text())
    uids = pool["uid"].to_numpy().astype(str)
    y_clean = np.array([classes.index(v) for v in pool["label"]])
    results: list[dict] = []
    notes: list[str] = []
    prepared = {}
    for pool_name in pools:
        if pool_name == "noisy":
            y, flipped = flip_labels(y_clean, args.noise, n_classes=len(classes), seed=args.seed)
        else:
            y, flipped = y_clean, np.zeros(len(y_clean), dtype=bool)
        log(f"{pool_name} pool: valuing and selecting ({int(flipped.sum())} flipped)")
        subsets, diag = choose_subsets(X, y, uids, valid, score, budget, wanted[pool_name], args.seed)
        prepared[pool_name] = (subsets, dict(zip(uids, (classes[c] for c in y))), dict(zip(uids, flipped)))
        if flipped.any():
            aucs = ", ".join(f"{m} {detection_scores(v.values, flipped)['auc']:.3f}"
                             for m, v in diag["values"].items())
            notes.append(f"{pool_name} pool, ROC-AUC of low value for the flipped rows: {aucs}")
        if "suggestion" in diag:
            notes.append(f"{pool_name} pool, TS-DShapley suggested removal: {diag['suggestion']['n_remove']} rows "
                         f"({100 * diag['suggestion']['fraction']:.1f} %)")
        secs = ", ".join(f"{k} {v:.0f} s" for k, v in diag["seconds"].items())
        notes.append(f"{pool_name} pool, valuation/selection seconds: {secs}" + (f"; k = {diag['k']}" if "k" in diag
                                                                                   else ""))
    text_of = dict(zip(uids, pool["text"]))
    deadline = time.time() + 60 * args.time_limit if args.time_limit else None
    stopped = False
    for seed in range(args.seeds):  # seeds outermost: a run cut short still has every subset
        for pool_name in pools:
            subsets, label_of, flip_of = prepared[pool_name]
            for name in wanted[pool_name]:
                key = f"{pool_name}|{name}|{seed}|{args.n}|{budget}|{args.epochs}|{args.max_length}|{args.noise}"
                chosen = subsets[name]
                chosen = np.asarray(chosen(seed) if callable(chosen) else chosen).astype(str)
                if key not in cache:
                    if deadline is not None and time.time() > deadline:
                        stopped = True
                        continue
                    log(f"fine-tune {pool_name} {name} seed {seed}: {len(chosen)} rows")
                    res = finetune.train_and_evaluate(
                        [text_of[u] for u in chosen], [label_of[u] for u in chosen], test["text"].tolist(),
                        test["label"].tolist(), classes=classes, model=args.model, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, max_length=args.max_length, seed=seed,
                        valid_fraction=valid_fraction, threads=args.threads)
                    cache[key] = {"accuracy": res.accuracy, "macro_f1": res.macro_f1, "seconds": res.train_seconds,
                                  "eps": res.examples_per_second}
                    log(f"  accuracy {res.accuracy:.4f} in {res.train_seconds:.0f} s "
                        f"({res.examples_per_second:.1f} ex/s)")
                    if args.cache:
                        Path(args.cache).write_text(json.dumps(cache))
                results.append(dict(cache[key], pool=pool_name, subset=name, seed=seed, rows=len(chosen),
                                    flipped=float(np.mean([flip_of[u] for u in chosen]))))
    if stopped:
        notes.append(f"stopped starting fine-tunes after --time-limit {args.time_limit:g} min: see the runs column")

    df = pd.DataFrame(results)
    if df.empty:
        print("\nno fine-tune finished")
        return 0
    print()
    print(f"SST-2 pool of {args.n:,} train.tsv rows ({100 * args.noise:.0f} % flipped in the noisy pool), budget "
          f"{budget:,} rows, {Path(args.model).name if args.model else 'all-MiniLM-L6-v2'} fine-tuned {args.epochs} epoch(s), batch {args.batch_size}, lr {args.lr}, "
          f"max_length {args.max_length}, {args.seeds} seeds; accuracy on test.tsv ({len(test)} rows) as mean ± "
          f"sample std; Δ = mean minus the full pool's mean.")
    print()
    print("| pool | subset | rows | flipped % | runs | accuracy | Δ vs full | macro-F1 | s/run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pool_name in pools:
        d = df[df["pool"] == pool_name]
        full = d[d["subset"] == "full"]["accuracy"].mean() if (d["subset"] == "full").any() else np.nan
        for name in wanted[pool_name]:
            r = d[d["subset"] == name]
            if r.empty:
                continue
            acc, f1 = r["accuracy"], r["macro_f1"]
            sd = lambda s: s.std(ddof=1) if len(s) > 1 else 0.0  # noqa: E731
            rows = int(r["rows"].mean())
            print(f"| {pool_name} | {name} | {rows:,} | {100 * r['flipped'].mean():.1f} | {len(r)} | "
                  f"{acc.mean():.4f} ± {sd(acc):.4f} | {100 * (acc.mean() - full):+.2f} | "
                  f"{f1.mean():.4f} ± {sd(f1):.4f} | {r['seconds'].mean():.0f} |")
    print()
    for n in notes:
        print(f"- {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
