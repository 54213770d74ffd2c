"""Sub-commands `finetune` (one model on one subset) and `compare` (subsets x seeds, mean and spread)."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from core import jobs, runs
from core.cli.common import add_data_args, open_data, print_table, progress
from core.data import column as ds_column
from core.errors import DataError
from core.runs import called
from core.workspace import Workspace

SUBSET_HELP = ("full | random:B | curated | selection:RUN_ID | top-value:B:VALUES_RUN_ID | kmq:B | "
               "clean-kmq:B[:VALUES_RUN_ID] | iterative:B, where B is a row count (2000), a fraction (0.5) or a "
               "percentage (30%%) of the training pool (the rows that are not test rows). "
               "random draws a new subset per seed; curated = all rows minus those decided 'remove'; "
               "selection = a saved subset (`python -m core runs --kind selection`); top-value = the B "
               "highest-valued rows of a valuation run; kmq = kMQ on the dataset's newest clusters; clean-kmq = "
               "drop the significantly harmful rows of a valuation run (default the newest), then kMQ; iterative = "
               "Diversify and Conquer's iterative refinement")


def _train_args(p: argparse.ArgumentParser, *, compare: bool = False) -> None:
    g = p.add_argument_group("training options")
    g.add_argument("--model", default=None,
                   help="a local model folder or a cached hub name (default: the packaged all-MiniLM-L6-v2, "
                        "with a fresh classification head)")
    g.add_argument("--epochs", type=int, default=3, help="maximum epochs (default 3; early stopping may stop sooner)")
    g.add_argument("--batch-size", type=int, default=32, help="training batch size (default 32)")
    g.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    g.add_argument("--max-length", type=int, default=128, help="tokens per text after truncation (default 128)")
    if compare:
        g.add_argument("--valid-fraction", type=float, default=None,
                       help="share of each subset held out for early stopping (default: 0 for equal-steps and "
                            "equal-epochs, 0.1 for convergence)")
    else:
        g.add_argument("--valid-fraction", type=float, default=0.1,
                       help="share of the training rows held out for early stopping (default 0.1; 0 = none)")
    g.add_argument("--patience", type=int, default=1,
                   help="epochs without validation improvement before stopping (default 1; 0 = never)")
    g.add_argument("--threads", type=int, default=None, help="CPU threads (default: the cores not busy with other work, at least 1)")
    g.add_argument("--device", default=None, choices=("cpu", "cuda"),
                   help="where to train (default: cuda when torch sees a GPU, else cpu)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a classifier on a dataset or a subset and score it on a test set",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune a sequence classifier on --train and report accuracy, macro-F1 and per-class "
                    "scores on --eval.\n\n"
                    "  --train DATA                  train on every row of DATA (any DATA the other steps take)\n"
                    "  --data DATA --train FILE      train on the rows of DATA whose uid is in FILE (a CSV, TSV,\n"
                    "                                JSONL or parquet file with a uid column, e.g. from "
                    "`select --out`)\n"
                    "  --data DATA --train SPEC      train on a subset of DATA, where SPEC is\n"
                    + textwrap.fill(SUBSET_HELP.replace("%%", "%"), 100, initial_indent=" " * 32,
                                    subsequent_indent=" " * 32, break_on_hyphens=False)
                    + "\n\nThe run is recorded in the workspace (kind finetune); --out writes its metrics as JSON.",
        epilog="example: python -m core finetune --data sst2 --train selection:12 --eval sst2:test --epochs 2 "
               "--out run.json")
    p.add_argument("--train", required=True, metavar="DATA|FILE|SPEC", help="what to train on (see above)")
    p.add_argument("--data", default=None, metavar="DATA",
                   help="the dataset a subset FILE or SPEC in --train refers to")
    p.add_argument("--eval", required=True, metavar="TEST", help="labelled test data (a file, sst2:test, ...)")
    p.add_argument("--seed", type=int, default=0, help="seed of the head, dropout, batches and validation split")
    p.add_argument("--out", default=None, metavar="FILE", help="write the metrics (and run id) as JSON here")
    p.add_argument("--save-model", default=None, metavar="DIR", help="save the fine-tuned model and tokenizer here")
    _train_args(p)
    add_data_args(p, positional=False)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "compare", help="fine-tune several subsets over seeds, fairly, and compare them with paired intervals",
        description="Fine-tune every subset with every seed under one protocol and report per subset the mean, "
                    "its 95% t-interval over seeds, and the paired difference against full and random (same seed "
                    "= same initialisation and held-out split for every subset), with a verdict and warnings. "
                    "Protocols: equal-steps (default: every subset trains as many optimizer steps as EPOCHS passes "
                    "over the largest), equal-epochs, convergence (early stopping on a validation split carved the "
                    "same way from each subset). Every budget is resolved against the same training pool (the data "
                    "minus the held-out split, capped by --pool-max), so a budget of B gives B rows to every subset. "
                    "Each finished fine-tune is checkpointed: running the same command again resumes. Subsets: "
                    + SUBSET_HELP.replace("%%", "%") + ". Without --eval, a stratified 20% of DATA (at most 2,000 "
                    "rows, drawn per seed) is held out as the test set and excluded from every subset.",
        epilog="example: python -m core compare sst2 --eval sst2:test --subsets full,random:0.5,clean-kmq:0.5 "
               "--seeds 2 --epochs 1 --pool-max 2000 --estimate")
    add_data_args(p)
    p.add_argument("--subsets", required=True, metavar="LIST", help="comma-separated subset specs (see above)")
    p.add_argument("--eval", default=None, metavar="TEST",
                   help="labelled test data (default: a held-out stratified split of DATA)")
    p.add_argument("--eval-fraction", type=float, default=0.2,
                   help="share of DATA held out as the test set without --eval (default 0.2, at most 2,000 rows)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per subset, 0..N-1 (default 3)")
    p.add_argument("--protocol", default="equal-steps", choices=("equal-steps", "equal-epochs", "convergence"),
                   help="how long each subset trains (default equal-steps)")
    p.add_argument("--pool-max", type=int, default=None, metavar="N",
                   help="cap the training pool at N rows (a stratified draw per seed); budgets are shares of it")
    p.add_argument("--eval-max", type=int, default=2000, metavar="N",
                   help="at most N held-out test rows without --eval (default 2000)")
    p.add_argument("--estimate", action="store_true",
                   help="print the estimated duration (measuring this machine's speed once, ~20 s) and exit")
    p.add_argument("--restart", action="store_true",
                   help="start a new experiment even if an unfinished one with the same options exists")
    p.add_argument("--background", action="store_true", help="run as a background job and print its id")
    p.add_argument("--json", action="store_true", help="print the result table as JSON")
    _train_args(p, compare=True)
    p.set_defaults(func=cmd_compare)


def _train_kwargs(args: argparse.Namespace) -> dict:
    return {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "max_length": args.max_length, "valid_fraction": args.valid_fraction,
            "early_stopping_patience": args.patience, "threads": args.threads, "device": args.device}


def _uids_from_file(path: str) -> list[str]:
    import pandas as pd

    p = Path(path)
    suffix = "".join(p.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet"):
            df = pd.read_parquet(p)
        elif suffix.endswith((".jsonl", ".json")):
            df = pd.read_json(p, lines=suffix.endswith(".jsonl"), dtype=False)
        else:
            df = pd.read_csv(p, sep="\t" if suffix.endswith(".tsv") else ",", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the subset file {path}: {e}") from e
    if "uid" not in df.columns:
        raise DataError(f"the subset file {path} has no uid column (found: {', '.join(map(str, df.columns))}); "
                        "write one with `python -m core select ... --out FILE`")
    return df["uid"].astype(str).tolist()


def cmd_finetune(args: argparse.Namespace, ws: Workspace) -> int:
    from core import experiment, finetune

    if args.data is None:
        args.data = args.train
        loaded = open_data(args, ws)
        texts, labels = ds_column(loaded.ds, "text"), ds_column(loaded.ds, "label")
        spec = "full"
    else:
        loaded = open_data(args, ws)
        pool = experiment._frame(loaded.ds)
        kind = args.train.split(":", 1)[0]
        if kind in experiment.SUBSET_KINDS and not Path(args.train).exists():
            spec = experiment.parse_subsets(args.train)[0]
            uids = experiment.resolve_subset(ws, loaded.dataset_id, spec, pool, seed=args.seed).uids
        else:
            if not Path(args.train).exists():
                raise DataError(f"--train {args.train} is neither a subset file nor a subset spec ({SUBSET_HELP})")
            want = set(_uids_from_file(args.train))
            uids = [u for u in pool["uid"] if u in want]
            if len(uids) < len(want):
                print(f"winnow: warning: {len(want) - len(uids)} uids of {args.train} are not in {args.data}",
                      file=sys.stderr)
            spec = f"file:{args.train}"
        rows = pool.set_index("uid").loc[uids]
        texts, labels = rows["text"].tolist(), rows["label"].tolist()
    test = experiment._load_eval(args.eval)
    classes = sorted(set(loaded.classes) | set(test["label"]))
    kw = _train_kwargs(args)
    with runs.recorded(ws, "finetune", dataset_id=loaded.dataset_id, method=spec,
                       params={**kw, "seed": args.seed, "train": args.train, "eval": args.eval},
                       job_id=args.job) as run:
        bar = progress(args, ws, "finetune")
        res = finetune.train_and_evaluate(texts, labels, test["text"].tolist(), test["label"].tolist(),
                                          classes=classes, seed=args.seed, save_dir=args.save_model,
                                          on_progress=bar, **kw)
        bar.close(f"accuracy {res.accuracy:.4f}")
        run.done(res.to_dict(), seconds=res.train_seconds)
    run_id = run.id
    out = dict(res.to_dict(), run_id=run_id, subset=spec, dataset_id=loaded.dataset_id)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{called(ws, run_id)}: {res.n_train:,} training rows ({res.n_valid:,} validation), "
          f"{res.epochs_run} epoch(s), {res.train_seconds:.1f} s ({res.examples_per_second:.1f} examples/s on "
          f"{res.device})")
    print(f"accuracy {res.accuracy:.4f}  macro-F1 {res.macro_f1:.4f}  on {res.n_test:,} test rows")
    print_table([{"class": c, "precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}
                 for c, s in res.per_class.items()])
    return 0


def cmd_compare(args: argparse.Namespace, ws: Workspace) -> int:
    from core import experiment

    specs = experiment.parse_subsets(args.subsets)  # fail fast, before a job starts
    if args.background:
        argv = [a for a in sys.argv[1:] if a != "--background"]
        job_id = jobs.start(ws, argv[argv.index("compare"):], label="compare")
        print(job_id)
        return 0
    loaded = open_data(args, ws)
    kw = _train_kwargs(args)
    if args.estimate:
        est = experiment.estimate_compare(ws, loaded.dataset_id, specs, data=loaded.ds, seeds=args.seeds,
                                          eval_path=args.eval, eval_fraction=args.eval_fraction,
                                          eval_max=args.eval_max, protocol=args.protocol, pool_max=args.pool_max,
                                          **kw)
        print(est["line"])
        print_table([{"subset": s, "rows": est["sizes"][s], "steps": est["shapes"][s]["steps"],
                      "s/fine-tune": f"{v:.0f}"} for s, v in est["per_subset"].items()])
        return 0
    bar = progress(args, ws, "compare")
    run_id = experiment.compare(ws, loaded.dataset_id, subsets=specs, eval_path=args.eval, data=loaded.ds,
                                seeds=args.seeds, eval_fraction=args.eval_fraction, eval_max=args.eval_max,
                                protocol=args.protocol, pool_max=args.pool_max, resume=not args.restart,
                                job_id=args.job, on_progress=bar, **kw)
    run = ws.run(run_id)
    bar.close("done")
    table = run.result["table"]
    if args.json:
        print(json.dumps({"run_id": run_id, "table": table, "verdict": run.result.get("verdict"),
                          "warnings": run.result.get("warnings", [])}, indent=2))
        return 0
    print(f"{called(ws, run)}: {len(table)} subsets x {args.seeds} seeds, {args.protocol}, "
          f"{run.result.get('n_test', 0):,} test rows, on {run.result.get('device', 'cpu')}")
    print_table(experiment.table_rows(table))
    print(run.result.get("verdict", ""))
    for w in run.result.get("warnings", []):
        print(f"winnow: warning: {w}", file=sys.stderr)
    return 0
