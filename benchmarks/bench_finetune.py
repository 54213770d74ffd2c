"""Fine-tuning benchmark: the papers' experiment on SST-2, run fairly (equal steps, paired seeds, intervals).

Pools of `--n` rows of SST-2 train.tsv, clean and with 10 % and 30 % of their labels flipped (`--flips 0,0.1,0.3`),
are valued with TS-DShapley on MiniLM embeddings against a clean validation sample of dev.tsv. At one budget (default:
the size that the larger of TS-DShapley's suggested removal and the significantly harmful rows leaves, so removal,
clean-then-diversify and random removal of as many rows meet at the same size) the subsets are: full, random, TS-DShapley removal, clean-then-diversify (drop the significantly harmful rows,
then kMQ's cluster shares), kMQ and iterative refinement (Diversify and Conquer). Each is fine-tuned (MiniLM) with
`--seeds` paired seeds (seed s: the same initialisation for every subset) under *equal steps*: every subset trains
as many optimizer steps as `--epochs` passes over the full pool, with early stopping on a 10 % validation split
carved the same way from each subset, checked once per full-pool epoch. Accuracy on test.tsv (the GLUE SST-2 dev
set); per subset the mean with its 95 % t-interval and the paired difference against full and against random.
Papers: Schoch, Mishra, Ji, arXiv 2306.10165 (TS-DShapley); Diversify and Conquer, arXiv 2409.11378.

    nice -n 19 .venv/bin/python benchmarks/bench_finetune.py --workers 2 --trainer-n 0 --force \
        --cache benchmarks/cache/finetune_sst2.json                        # the full run: hours on 2 cores
    nice -n 10 .venv/bin/python benchmarks/bench_finetune.py --n 1000 --seeds 2 --epochs 1 --trainer-n 0 --force

It can first time the training loop against a plain `transformers.Trainer` (`--trainer-n`), estimates the whole run
from the measured speed, and stops when the estimate exceeds `--max-minutes` (unless `--force`). Prints a header line
(date, CPUs, device, versions, load average) and markdown tables on stdout, progress on stderr. `--cache FILE` keeps
finished fine-tunes (JSON) so that an interrupted run resumes; nothing else is written. The papers' experiment keeps
its cache in the repository (benchmarks/cache/finetune_sst2.json): the run spans sessions, and its table is printed
from every fine-tune finished so far (each entry records when it finished and on how many threads).
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

from core import experiment, finetune  # noqa: E402

SUBSETS = ("full", "random", "ts_removal", "clean_kmq", "kmq", "iterative", "ts_top", "consensus", "knn_shapley")
DEFAULT_SUBSETS = "full,random,ts_removal,clean_kmq,kmq,iterative"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_tsv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype=str)
    return pd.DataFrame({"text": df["sentence"].str.strip(), "label": df["label"].str.strip()})


def embed(texts: list[str], model: str | None) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings (core.embed; cached on disk by text)."""
    from core.embed import embed_texts

    return np.asarray(embed_texts(texts, model=model), dtype=np.float32)


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
                                      valid_fraction=0.0, threads=args.threads, device=args.device)
    return {"rows": len(texts), "seconds": res.train_seconds, "wall": time.perf_counter() - t0,
            "eps": len(texts) / res.train_seconds, "step_eps": res.examples_per_second}


# ------------------------------------------------------------------------------------------------ subsets
def choose_subsets(X: np.ndarray, y: np.ndarray, uids: np.ndarray, valid, score, budget_arg: str,
                   wanted: list[str], seed: int) -> tuple[dict[str, object], dict[str, object]]:
    """name -> uids (or a function seed -> uids for random), and diagnostics (values, suggestion, budget, seconds)."""
    from core.selection import (fit_clusters, select_clean_kmq, select_iterative, select_kmq, select_random,
                                select_top_value)
    from core.valuation import METHODS, suggest_removal
    from core.valuation.base import Split
    from core.valuation.consensus import combine
    from core.valuation.significance import summarize

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

    value("ts_dshapley")
    t = time.perf_counter()
    sug = suggest_removal(train, values["ts_dshapley"], valid=valid, score_on=score, seed=seed)
    diag["seconds"]["removal"] = time.perf_counter() - t
    diag["suggestion"] = {"n_remove": sug.n_remove, "fraction": sug.fraction}
    diag["significance"] = summarize(values["ts_dshapley"])
    n = len(uids)
    if budget_arg == "removal":
        # what the larger of the two cleanings leaves (TS-DShapley's suggested removal, or the significantly harmful
        # rows), so every subset, clean-then-diversify included, can be drawn at it; at least 1 row removed
        budget = n - max(sug.n_remove, diag["significance"].harmful, 1)
    else:
        b = float(budget_arg)
        budget = int(round(b * n)) if b <= 1 else int(b)
    diag["budget"] = budget
    if "full" in wanted:
        out["full"] = uids
    if "random" in wanted:
        out["random"] = lambda s: select_random(uids, budget=budget, seed=1000 + s).uids
    if "ts_removal" in wanted:
        drop = set(sug.uids.astype(str))
        kept = np.array([u for u in uids if u not in drop])
        if len(kept) != budget:  # at another budget: the lowest values go until `budget` rows remain
            kept = select_top_value(values["ts_dshapley"], budget=budget).uids
        out["ts_removal"] = kept
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
    if {"kmq", "iterative", "clean_kmq"} & set(wanted):
        t = time.perf_counter()
        clusters = fit_clusters(X, budget=budget, uids=uids, seed=seed)
        diag["k"] = clusters.k
        diag["seconds"]["clusters"] = time.perf_counter() - t
        if "kmq" in wanted:
            out["kmq"] = select_kmq(values["ts_dshapley"], clusters, budget=budget, seed=seed).uids
        if "clean_kmq" in wanted:
            sig = diag["significance"]
            # significantly harmful rows when the values can tell any; else the suggested removal
            n_remove = None if sig.harmful > 0 else sug.n_remove
            try:
                sel = select_clean_kmq(values["ts_dshapley"], clusters, budget=budget, n_remove=n_remove, seed=seed)
                out["clean_kmq"] = sel.uids
                diag["clean"] = f"{sel.params['n_dropped']} dropped ({sel.params['rule']})"
            except Exception as e:  # noqa: BLE001 - reported in the notes, the other subsets still run
                diag["clean"] = f"not run: {e}"
        if "iterative" in wanted:
            t = time.perf_counter()
            out["iterative"] = select_iterative(X, y, clusters, budget=budget, values=values["ts_dshapley"],
                                                seed=seed).uids
            diag["seconds"]["iterative"] = time.perf_counter() - t
    diag["values"] = values
    return out, diag


# ------------------------------------------------------------------------------------------------ fine-tunes
def fine_tune(key: str, kwargs: dict) -> tuple[str, dict]:
    """One fine-tune (in a worker process when --workers > 1): the cache entry of its result."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kwargs = dict(kwargs)
    res = finetune.train_and_evaluate(kwargs.pop("texts"), kwargs.pop("labels"), kwargs.pop("test_texts"),
                                      kwargs.pop("test_labels"), **kwargs)
    return key, {"accuracy": res.accuracy, "macro_f1": res.macro_f1, "seconds": res.train_seconds,
                 "eps": res.examples_per_second, "steps": res.steps, "n_train": res.n_train,
                 "best": res.best_epoch, "device": res.device, "finished": datetime.datetime.now().isoformat(
                     timespec="seconds"), "threads": res.params.get("threads")}


def save_cache(path: str | None, cache: dict) -> None:
    """Write the cache whole, then move it into place (an interrupted write leaves the previous file)."""
    if path:
        tmp = Path(path).with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
        os.replace(tmp, path)


def run_tasks(tasks: list[tuple[str, dict]], cache: dict, args: argparse.Namespace, deadline: float | None) -> bool:
    """Run the fine-tunes not in the cache, `args.workers` at a time, saving the cache after each one; True when
    --time-limit stopped new ones from starting."""
    def log_done(key: str, entry: dict) -> None:
        cache[key] = entry
        save_cache(args.cache, cache)
        log(f"  {key.split('|')[0]} {key.split('|')[1]} seed {key.split('|')[2]}: accuracy {entry['accuracy']:.4f} "
            f"in {entry['seconds']:.0f} s ({entry['eps']:.1f} ex/s, {entry['steps']} steps, kept check "
            f"{entry['best']}); {len(cache)} in the cache")

    stopped = False
    if args.workers == 1:
        for key, kw in tasks:
            if deadline is not None and time.time() > deadline:
                return True
            log(f"fine-tune {key.split('|')[0]} {key.split('|')[1]} seed {key.split('|')[2]}: {len(kw['texts'])} "
                f"rows, {kw['max_steps']} steps")
            log_done(*fine_tune(key, kw))
        return False
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    # spawn: a forked child of a process that already ran torch (the embeddings) can hang in its thread pools
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        queue, running = list(tasks), set()
        while queue or running:
            while queue and len(running) < args.workers:
                if deadline is not None and time.time() > deadline:
                    stopped, queue = True, []
                    break
                key, kw = queue.pop(0)
                log(f"fine-tune {key.split('|')[0]} {key.split('|')[1]} seed {key.split('|')[2]}: "
                    f"{len(kw['texts'])} rows, {kw['max_steps']} steps")
                running.add(pool.submit(fine_tune, key, kw))
            if running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for f in finished:
                    log_done(*f.result())
    return stopped


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="training pool rows from train.tsv (default 5000)")
    p.add_argument("--flips", default="0,0.1,0.3", help="label-flip rates of the pools (default 0,0.1,0.3)")
    p.add_argument("--budget", default="removal",
                   help="subset size: 'removal' (what the larger of TS-DShapley's suggested removal and the "
                        "significantly harmful rows leaves; default), a fraction of the pool or a count")
    p.add_argument("--seeds", type=int, default=5, help="paired seeds (default 5)")
    p.add_argument("--epochs", type=int, default=3, help="full-pool epochs' worth of steps (default 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="early-stopping split carved from each subset (default 0.1; 0 = none)")
    p.add_argument("--patience", type=int, default=1, help="checks without improvement before stopping")
    p.add_argument("--valid-n", type=int, default=1000, help="dev.tsv rows the values are scored on")
    p.add_argument("--score-n", type=int, default=1000, help="other dev.tsv rows the removal index is chosen on")
    p.add_argument("--test-n", type=int, default=0, help="score on a seeded sample of test.tsv (0 = all; quick runs)")
    p.add_argument("--subsets", default=DEFAULT_SUBSETS, help=f"of {','.join(SUBSETS)} (default {DEFAULT_SUBSETS})")
    p.add_argument("--trainer-n", type=int, default=800, help="rows of the Trainer throughput comparison (0: skip)")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats of the throughput comparison")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per fine-tune (default: the idle cores at start, at least 1, divided among "
                        "--workers; fixed for the whole run)")
    p.add_argument("--workers", type=int, default=1,
                   help="fine-tunes run at once, each in its own process (default 1); on 2 idle cores, 2 workers of "
                        "1 thread train more examples per second than 1 worker of 2 threads")
    p.add_argument("--device", default=None, choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=45.0, help="stop if the estimate exceeds this")
    p.add_argument("--force", action="store_true", help="run even if the estimate exceeds --max-minutes")
    p.add_argument("--time-limit", type=float, default=None,
                   help="minutes after which no new fine-tune starts (the table shows what finished)")
    p.add_argument("--throughput-only", action="store_true")
    p.add_argument("--report-only", action="store_true",
                   help="start no fine-tune: print the table of those in --cache (a run still in progress elsewhere)")
    p.add_argument("--cache", default=None, help="JSON file of finished fine-tunes (resume an interrupted run)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "sst2"))
    args = p.parse_args(argv)
    args.workers = max(1, args.workers)
    if args.threads is None:
        args.threads = max(1, finetune._default_threads() // args.workers)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # BLAS threads of the valuation too: oversubscribed threads crawl

    import sklearn
    import torch
    import transformers

    from core.device import select_device

    data = Path(args.data_dir)
    if not (data / "train.tsv").exists():
        print(f"SST-2 not found in {data}; nothing to benchmark", file=sys.stderr)
        return 1
    dev_used = select_device(args.device, threads=args.threads)
    print(f"{datetime.date.today()} | {os.cpu_count()} CPUs ({args.workers} worker(s) x {args.threads} threads) | {dev_used.label} | Python "
          f"{platform.python_version()} | torch {torch.__version__} | transformers {transformers.__version__} | "
          f"scikit-learn {sklearn.__version__} | numpy {np.__version__} | load "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rng = np.random.default_rng(args.seed)
    train_all, dev, test = read_tsv(data / "train.tsv"), read_tsv(data / "dev.tsv"), read_tsv(data / "test.tsv")
    if args.test_n and args.test_n < len(test):
        test = test.sample(n=args.test_n, random_state=args.seed).reset_index(drop=True)
    pool = train_all.iloc[np.sort(rng.choice(len(train_all), args.n, replace=False))].reset_index(drop=True)
    pool.insert(0, "uid", [f"t{i}" for i in range(len(pool))])
    dev_idx = rng.permutation(len(dev))
    valid_df = dev.iloc[dev_idx[:args.valid_n]].reset_index(drop=True)
    score_df = dev.iloc[dev_idx[args.valid_n:args.valid_n + args.score_n]].reset_index(drop=True)
    classes = sorted(set(pool["label"]))
    flips = [float(f) for f in args.flips.split(",") if f.strip()]
    wanted = [s.strip() for s in args.subsets.split(",") if s.strip()]
    bad = set(wanted) - set(SUBSETS)
    if bad:
        p.error(f"unknown subsets {sorted(bad)}; use {','.join(SUBSETS)}")

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

    # ---- estimate (core.experiment's arithmetic, at the largest budget: every subset takes the full pool's steps)
    if eps is None:
        r = ours_throughput(pool["text"].tolist()[:256], pool["label"].tolist()[:256], test, args)
        eps = r["step_eps"]
    tp = experiment.Throughput(train_examples_per_second=eps, predict_examples_per_second=3 * eps, load_seconds=3.0,
                               device=dev_used.label, key="bench")
    sizes = {s: args.n for s in wanted}
    est = experiment.estimate_seconds(sizes, seeds=args.seeds, n_test=len(test), throughput=tp,
                                      protocol="equal-steps", epochs=args.epochs, batch_size=args.batch_size,
                                      valid_fraction=args.valid_fraction)
    n_runs = len(wanted) * args.seeds * len(flips)
    minutes = len(flips) * est["total"] / 60 / args.workers  # workers run fine-tunes side by side
    print(f"\nEstimate before the run: {n_runs} fine-tunes ({len(flips)} pools × {len(wanted)} subsets × {args.seeds} "
          f"seeds), equal steps of {args.epochs} epoch(s) over {args.n:,} rows at {eps:.1f} examples/s"
          f"{f' in each of {args.workers} workers' if args.workers > 1 else ''} -> at most "
          f"{experiment.format_duration(60 * minutes)} (early stopping may finish sooner; valuation not counted)")
    if minutes > args.max_minutes and not args.force:
        log(f"over --max-minutes {args.max_minutes:.0f}: shrink --n/--seeds/--epochs/--subsets or pass --force")
        return 3

    # ---- embeddings
    os.environ.setdefault("WINNOW_THREADS", str(args.threads))
    t = time.perf_counter()
    X_all = embed(pool["text"].tolist() + valid_df["text"].tolist() + score_df["text"].tolist(), args.model)
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
    notes: list[str] = []
    prepared = {}
    pools = [f"{int(round(100 * f))} % flipped" if f > 0 else "clean" for f in flips]
    for pool_name, flip in zip(pools, flips):
        if flip > 0:
            y, flipped = flip_labels(y_clean, flip, n_classes=len(classes), seed=args.seed)
        else:
            y, flipped = y_clean, np.zeros(len(y_clean), dtype=bool)
        log(f"{pool_name} pool: valuing and selecting ({int(flipped.sum())} flipped)")
        subsets, diag = choose_subsets(X, y, uids, valid, score, args.budget, wanted, args.seed)
        prepared[pool_name] = (subsets, dict(zip(uids, (classes[c] for c in y))), dict(zip(uids, flipped)),
                               diag["budget"])
        if flipped.any():
            aucs = ", ".join(f"{m} {detection_scores(v.values, flipped)['auc']:.3f}"
                             for m, v in diag["values"].items())
            notes.append(f"{pool_name}: ROC-AUC of low value for the flipped rows: {aucs}")
        sig = diag["significance"]
        notes.append(f"{pool_name}: budget {diag['budget']:,} rows; TS-DShapley suggested removal "
                     f"{diag['suggestion']['n_remove']} rows ({100 * diag['suggestion']['fraction']:.1f} %); "
                     f"significantly harmful {sig.harmful}, uncertain {sig.uncertain}, helpful {sig.helpful}"
                     + (f"; clean-then-diversify: {diag['clean']}" if "clean" in diag else ""))
        secs = ", ".join(f"{k} {v:.0f} s" for k, v in diag["seconds"].items())
        notes.append(f"{pool_name}: valuation/selection seconds: {secs}" + (f"; k = {diag['k']}" if "k" in diag
                                                                             else ""))
    text_of = dict(zip(uids, pool["text"]))
    deadline = time.time() + 60 * args.time_limit if args.time_limit else None
    done: dict[str, dict[str, dict]] = {name: {} for name in pools}
    majority = float(test["label"].value_counts(normalize=True).iloc[0])
    flipped_share: dict[tuple[str, str], list[float]] = {}
    tasks: list[tuple[str, dict]] = []  # (cache key, train_and_evaluate keyword arguments), in run order
    placed: list[tuple[str, str, int, str, int]] = []  # (pool, subset, seed, cache key, rows)
    for seed in range(args.seeds):  # seeds outermost: a run cut short still has every subset
        for pool_name in pools:
            subsets, label_of, flip_of, budget = prepared[pool_name]
            chosen_all = {name: np.asarray(c(seed) if callable(c) else c).astype(str)
                          for name, c in subsets.items()}
            # equal steps: every subset takes `epochs` passes' worth of steps of the largest (the full pool)
            shapes = experiment.plan_runs({k: len(v) for k, v in chosen_all.items()}, protocol="equal-steps",
                                          epochs=args.epochs, batch_size=args.batch_size,
                                          valid_fraction=args.valid_fraction)
            largest = max(s.n_train for s in shapes.values())
            for name in wanted:
                if name not in chosen_all:
                    continue
                chosen = chosen_all[name]
                key = (f"{pool_name}|{name}|{seed}|{args.n}|{budget}|{args.epochs}|{args.max_length}|"
                       f"{args.valid_fraction}|{args.lr}|equal-steps")
                placed.append((pool_name, name, seed, key, len(chosen)))
                flipped_share.setdefault((pool_name, name), []).append(
                    float(np.mean([flip_of[u] for u in chosen])))
                if key not in cache:
                    tasks.append((key, dict(
                        texts=[text_of[u] for u in chosen], labels=[label_of[u] for u in chosen],
                        test_texts=test["text"].tolist(), test_labels=test["label"].tolist(), classes=classes,
                        model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        max_length=args.max_length, seed=seed, valid_fraction=args.valid_fraction,
                        early_stopping_patience=args.patience, threads=args.threads, device=args.device,
                        max_steps=shapes[name].steps, eval_every=max(1, -(-largest // args.batch_size)))))
    log(f"{len(placed) - len(tasks)} of {len(placed)} fine-tunes already in the cache; {len(tasks)} to run on "
        f"{args.workers} worker(s) of {args.threads} thread(s)")
    stopped = run_tasks(tasks, cache, args, deadline) if not args.report_only else bool(tasks)
    for pool_name, name, seed, key, n_rows in placed:
        if key in cache:
            c = cache[key]
            done[pool_name][f"{name}|{seed}"] = dict(c, seed=seed, n_rows=n_rows, train_seconds=c["seconds"],
                                                     majority=majority, n_test=len(test))
    if stopped and args.report_only:
        notes.append(f"{len(placed) - len(tasks)} of {len(placed)} fine-tunes finished so far (--report-only): see "
                     "the seeds column")
    elif stopped:
        notes.append(f"stopped starting fine-tunes after --time-limit {args.time_limit:g} min: see the seeds column")

    if not any(done.values()):
        print("\nno fine-tune finished")
        return 0
    print()
    print(f"SST-2 pools of {args.n:,} train.tsv rows, {Path(args.model).name if args.model else 'all-MiniLM-L6-v2'} "
          f"fine-tuned with equal steps ({args.epochs} epoch(s) of the full pool, batch {args.batch_size}, lr "
          f"{args.lr}, max_length {args.max_length}, early stopping on {100 * args.valid_fraction:.0f} % of each "
          f"subset, patience {args.patience}), {args.seeds} paired seeds; accuracy on test.tsv ({len(test)} rows): "
          "mean ± 95 % t-interval; paired differences in points ± their 95 % interval (n/a: the reference itself).")
    print()
    print("| pool | subset | rows | flipped % | steps | seeds | accuracy (95% CI) | vs full (points) | "
          "vs random (points) | s/run |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    for pool_name in pools:
        specs = [s if s != "random" else "random:B" for s in wanted]
        ck = {k.replace("random|", "random:B|"): v for k, v in done[pool_name].items()}
        table = experiment.summarize_compare(ck, specs)
        for r, cells in zip(table, experiment.table_rows(table)):
            name = r["subset"].replace("random:B", "random")
            fl = flipped_share.get((pool_name, name), [0.0])
            print(f"| {pool_name} | {name} | {cells['rows']} | {100 * float(np.mean(fl)):.1f} | {cells['steps']} | "
                  f"{cells['seeds']} | {cells['accuracy (95% CI)']} | {cells['vs full (points)']} | "
                  f"{cells['vs random (points)']} | {r['train_seconds']:.0f} |")
        verdicts.append(f"{pool_name}: " + experiment.verdict_line(table).replace("random:B", "random"))
        verdicts += [f"{pool_name}: warning: " + w.replace("random:B", "random")
                     for w in experiment.compare_warnings(table, ck)]
    print()
    for v in verdicts:
        print(f"- {'' if ': warning: ' in v else 'verdict, '}{v}")
    for n in notes:
        print(f"- {n}")
    print(f"- load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
