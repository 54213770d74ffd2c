"""`cluster` and `select`: k-means clusters with summaries, and subsets of exactly the budget that honour decisions."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.cli import common
from core.data import column as ds_column
from core.errors import DataError
from core.runs import called
from core.selection.strategies import NEEDS_CLUSTERS, NEEDS_VALUES, STRATEGIES
from core.valuation.base import Values
from core.valuation.store import latest_values, load_values
from core.workspace import Workspace

STRATEGY_FLAGS = tuple(s.replace("_", "-") for s in STRATEGIES)


def register(sub: Any) -> None:
    p = common.embedding_command(
        sub, "cluster", "k-means clusters of the embeddings, with a summary table",
        "Cluster the embeddings (k by the best silhouette unless --k) and print one row per cluster: id, name, size, "
        "label mix, mean value, top words. The clusters are recorded in the workspace and reused by `select`.")
    _cluster_args(p)
    p.add_argument("--refit", action="store_true", help="fit again even if these clusters are in the workspace")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the rows-by-chunk work on this Dask cluster (e.g. tcp://host:8786; default: "
                        "$WINNOW_DASK_SCHEDULER, else here): embedding the uncached texts and, past the sampling "
                        "threshold, labelling every row with its nearest centroid")
    p.add_argument("--examples", action="store_true", help="also print the texts nearest each centroid")
    p.set_defaults(func=cmd_cluster)

    s = common.embedding_command(
        sub, "select", "choose a subset of exactly --budget rows (kmq, iterative, ...)",
        "Choose a subset that honours the workspace's decisions (remove: never in; keep: always in, counted toward "
        "the budget), write uid,cluster,reason to --out and record it in the workspace.")
    s.add_argument("--strategy", choices=STRATEGY_FLAGS, default="kmq", help="selection strategy (default kmq)")
    s.add_argument("--budget", default=None,
                   help="rows to keep: a count (5000) or a fraction of the rows not removed (0.3 or 30%%); "
                        "drop-negative sets its own size")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--values", metavar="CSV", default=None, help="values file with columns uid,value")
    src.add_argument("--run", metavar="ID", type=int, default=None,
                     help="a valuation run in the workspace (default: the newest one, if any)")
    s.add_argument("--no-values", action="store_true",
                   help="ignore valuation runs; kmq/iterative then use the cross-fitted label confidence")
    s.add_argument("--weights", default=None, metavar="C=W,...",
                   help="cluster weights, e.g. 3=0,5=2.0 (0 empties a cluster; others 1.0)")
    s.add_argument("--temperature", type=float, default=0.1,
                   help="T of p ∝ exp(quality/T) inside a cluster (default 0.1; 0 = top-k)")
    s.add_argument("--rounds", type=int, default=3, help="iterative: rounds (default 3)")
    s.add_argument("--reweight-temperature", type=float, default=1.0,
                   help="iterative: T of the cluster re-weighting w·exp(z/T) (default 1.0)")
    s.add_argument("--target-model", default=None, metavar="MODEL",
                   help="iterative: score rounds with a fine-tuned MODEL (folder or 'default') instead of the "
                        "logistic-regression source classifier (slow)")
    s.add_argument("--remove-count", type=int, default=None, metavar="N",
                   help="drop-negative: drop the N lowest values (default: the run's suggestion, else all < 0); "
                        "clean-kmq: drop the N lowest instead of the significantly harmful rows")
    _cluster_args(s)
    s.add_argument("--out", default=None, metavar="CSV", help="write uid,cluster,reason here")
    s.add_argument("--dry-run", action="store_true", help="print the preview; save nothing")
    s.set_defaults(func=cmd_select)


def _cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("clustering")
    g.add_argument("--k", type=int, default=None, help="number of clusters (default: best silhouette over 4..256)")
    g.add_argument("--seed", type=int, default=0, help="seed of clustering and sampling (default 0)")


# ----------------------------------------------------------------------------------------------- helpers
def parse_weights(text: str | None) -> dict[int, float]:
    """'3=0,5=2.0' -> {3: 0.0, 5: 2.0}."""
    out: dict[int, float] = {}
    if not text:
        return out
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        c, sep, w = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[int(c)] = float(w)
        except ValueError:
            raise DataError(f"--weights item {part!r} is not CLUSTER=WEIGHT (e.g. --weights 3=0,5=2.0)") from None
    return out


def read_values_file(path: str) -> Values:
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise DataError(f"values file {path} does not exist")
    try:
        df = pd.read_csv(p, dtype={"uid": str})
    except Exception as e:  # noqa: BLE001 - pandas raises many kinds
        raise DataError(f"cannot read values file {path}: {e}") from None
    return Values.from_frame(df, method=p.stem, source=f"values file {path}")


def values_from_run(ws: Workspace, run_id: int) -> tuple[Values, Any]:
    return load_values(ws, run_id), ws.run(run_id)


def _labels(loaded: Any) -> np.ndarray:
    from core import data

    return np.asarray(data.label_codes(loaded.ds, loaded.classes), dtype=np.int64)


def _clusters(args: argparse.Namespace, ws: Workspace, loaded: Any, emb_id: int, X: np.ndarray, prog: Any, *,
              budget: int | None = None, refit: bool = False) -> tuple[int, Any, bool]:
    from core.selection import ensure_clusters

    return ensure_clusters(ws, loaded.dataset_id, X, ds_column(loaded.ds, "uid"), embedding_id=emb_id, k=args.k,
                           seed=args.seed, budget=budget, refit=refit, job_id=getattr(args, "job", None),
                           on_progress=prog, scheduler=getattr(args, "scheduler", None))


# ----------------------------------------------------------------------------------------------- commands
def cmd_cluster(args: argparse.Namespace, ws: Workspace) -> int:
    return _run(_cluster, args, ws)


def _cluster(args: argparse.Namespace, ws: Workspace, bars: list[Any]) -> int:
    from core.selection import cluster_summaries, summaries_table

    loaded = common.open_data(args, ws)
    prog = common.progress(args, ws, "cluster")
    bars.append(prog)
    emb_id, X = common.get_embeddings(args, ws, loaded, prog.stage(0.0, 0.5, "embed"))
    run_id, cl, fitted = _clusters(args, ws, loaded, emb_id, X, prog.stage(0.5, 0.9, "k-means"), refit=args.refit)
    values, values_run = latest_values(ws, loaded.dataset_id)
    summ = cluster_summaries(ws, run_id, cl, texts=ds_column(loaded.ds, "text"), labels=ds_column(loaded.ds, "label"),
                             X=X, values=values, values_run_id=None if values_run is None else values_run.id,
                             classes=loaded.classes)
    prog.close(f"{cl.k} clusters")
    if getattr(args, "job", None):
        from core import jobs

        jobs.attach_run(ws, args.job, run_id)
    from core.selection.clusters import k_reason

    print(f"{cl.k} clusters ({k_reason(cl)}); {'fitted in %.1f s' % cl.seconds if fitted else 'reused'}"
          f"; {called(ws, run_id)}" + (f"; values from {called(ws, values_run)} ({values_run.method})"
                                        if values_run is not None else ""))
    common.print_table(summaries_table(summ))
    if args.examples:
        for s in summ:
            print(f"\n## cluster {s['cluster']}: {s['name']}")
            for ex in s["examples"]:
                print(f"  [{ex['label']}] {ex['text'][:160]!r}")
    return 0


def cmd_select(args: argparse.Namespace, ws: Workspace) -> int:
    return _run(_select, args, ws)


def _run(fn: Any, args: argparse.Namespace, ws: Workspace) -> int:
    """Run a command; on an error close its progress bar first, so the error prints on a line of its own."""
    bars: list[Any] = []
    try:
        return fn(args, ws, bars)
    except BaseException:
        for bar in bars:
            bar.bar.close()
        raise


def _select(args: argparse.Namespace, ws: Workspace, bars: list[Any]) -> int:
    from core.selection import Selection, decided, plan_strategy, removal_count, resolve_budget, select_iterative
    from core.selection.store import judge_proba, last_selection, save_selection

    t0 = time.perf_counter()
    strategy = args.strategy.replace("-", "_")
    weights = parse_weights(args.weights)
    if weights and strategy not in NEEDS_CLUSTERS:
        raise DataError(f"--weights applies to --strategy kmq or iterative, not {args.strategy}")
    if strategy == "drop_negative" and args.budget is not None:
        raise DataError("drop-negative keeps every row not dropped; leave out --budget (or use --strategy "
                        "top-value)")
    if strategy != "drop_negative" and args.budget is None:
        raise DataError(f"--strategy {args.strategy} needs --budget (a count like 5000 or a fraction like 0.3)")
    if args.out is None and not args.dry_run:
        raise DataError("pass --out subset.csv (or --dry-run to only preview)")
    if args.target_model and strategy != "iterative":
        raise DataError("--target-model applies to --strategy iterative")

    loaded = common.open_data(args, ws)
    uids = np.asarray(ds_column(loaded.ds, "uid"), dtype=str)
    y = _labels(loaded)
    removed, pinned = decided(ws, loaded.dataset_id)

    # values: a file, a run, else the newest valuation run (unless --no-values)
    values: Values | None = None
    values_run = None
    if args.values:
        values = read_values_file(args.values)
    elif args.run is not None:
        values, values_run = values_from_run(ws, args.run)
    elif not args.no_values:
        values, values_run = latest_values(ws, loaded.dataset_id)
    if values is not None:
        from core.selection import align_values

        align_values(values, uids)  # one clear line when the uids do not match the data
    if strategy in NEEDS_VALUES and values is None:
        raise DataError(f"--strategy {args.strategy} needs values: pass --values FILE or --run ID, or run "
                        "`python -m core value` first")

    # cheap checks first, before any embedding or clustering
    n_removed = len(set(removed) & set(uids.tolist()))
    b = None
    if strategy != "drop_negative":
        b = resolve_budget(args.budget, len(uids) - n_removed, n_rows=len(uids))
        n_pinned = len(set(pinned) & set(uids.tolist()))
        if n_pinned > b:
            raise DataError(f"{n_pinned} pinned rows exceed the budget of {b}; raise the budget or unpin rows")

    prog = common.progress(args, ws, "select")
    bars.append(prog)
    emb_id, X, clusters_run_id, cl = None, None, None, None
    if strategy in NEEDS_CLUSTERS:
        emb_id, X = common.get_embeddings(args, ws, loaded, prog.stage(0.0, 0.3, "embed"))
        clusters_run_id, cl, _ = _clusters(args, ws, loaded, emb_id, X, prog.stage(0.3, 0.6, "k-means"), budget=b)
    else:  # clusters only label the output, when some already exist
        from core.selection.store import load_clusters

        run = ws.latest_run("clusters", dataset_id=loaded.dataset_id)
        if run is not None:
            c = load_clusters(ws, run.id)
            if np.array_equal(c.uids, uids):
                clusters_run_id, cl = run.id, c

    judge = None
    if strategy == "iterative" or (strategy == "kmq" and values is None):
        prog(0.6, "judge: cross-fitted label confidence")
        judge = judge_proba(ws, X, y, n_classes=len(loaded.classes), embedding_id=emb_id, seed=args.seed)

    last = last_selection(ws, loaded.dataset_id)
    if strategy == "iterative":
        train_fn = None
        if args.target_model:
            from core.experiment import target_model_train_fn

            train_fn = target_model_train_fn(list(ds_column(loaded.ds, "text")), y, loaded.classes,
                                             model=None if args.target_model == "default" else args.target_model,
                                             seed=args.seed)
        sel = select_iterative(X, y, cl, budget=args.budget, values=values, judge=judge, rounds=args.rounds,
                               temperature=args.temperature, reweight_temperature=args.reweight_temperature,
                               weights=weights, pinned=pinned, removed=removed, seed=args.seed, train_fn=train_fn,
                               classes=loaded.classes, on_progress=prog.stage(0.65, 0.99, "iterative"))
    else:
        n_remove = removal_count(strategy, values, values_run, args.remove_count)
        plan = plan_strategy(strategy, uids=uids, y=y, classes=loaded.classes, clusters=cl, values=values,
                             pinned=pinned, removed=removed, seed=args.seed, temperature=args.temperature,
                             judge=judge, n_remove=n_remove)
        if isinstance(plan, Selection):  # drop-negative: a fixed subset
            sel = plan
        elif args.dry_run:
            pv = plan.preview(args.budget, weights or None, last=last)
            prog.close("preview")
            print(f"preview: {pv.n} rows; vs last saved subset: +{pv.added} -{pv.removed} ({pv.seconds * 1e3:.1f} ms)")
            print("per class: " + ", ".join(f"{k} {v}" for k, v in pv.per_class.items()))
            _warn_class_mix(y, loaded.classes, pv.per_class)
            if pv.per_cluster:
                print("per cluster: " + ", ".join(f"{k}:{v}" for k, v in pv.per_cluster.items()))
            return 0
        else:
            sel = plan.select(args.budget, weights or None)
    if args.dry_run:
        prog.close("preview")
        print(f"{sel.strategy}: {len(sel)} rows (not saved)")
        return 0

    run_id = save_selection(ws, loaded.dataset_id, sel, embedding_id=emb_id, clusters_run_id=clusters_run_id,
                            values_run_id=None if values_run is None else values_run.id,
                            job_id=getattr(args, "job", None))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sel.to_frame()[["uid", "cluster", "reason"]].to_csv(out, index=False)
    prog.close(f"{len(sel)} rows")
    if getattr(args, "job", None):
        from core import jobs

        jobs.attach_run(ws, args.job, run_id)
    counts = np.bincount(y[np.isin(uids, sel.uids)], minlength=len(loaded.classes))
    mix = ", ".join(f"{c} {n}" for c, n in zip(loaded.classes, counts))
    diff = ""
    if last is not None:
        prev = set(last.uids.tolist())
        now = set(sel.uids.tolist())
        diff = f"; vs subset before: +{len(now - prev)} -{len(prev - now)}"
    _warn_class_mix(y, loaded.classes, dict(zip(loaded.classes, (int(c) for c in counts))))
    src = sel.params.get("quality") or sel.params.get("values") or ""
    print(f"{sel.strategy}: {len(sel)} of {len(uids)} rows ({len(removed)} removed, {len(pinned)} pinned"
          f"{', quality: ' + src if src else ''}); class mix: {mix}{diff}; saved as {called(ws, run_id)}; "
          f"wrote {out} in {time.perf_counter() - t0:.1f} s")
    if sel.history:
        last_w = sel.history[-1]["weights"]
        low = np.argsort(last_w)[:5]
        print("lowest cluster weights after refinement: " + ", ".join(f"{c}: {last_w[c]:.3g}" for c in low))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run as: python -m core select ...")


def _warn_class_mix(y: np.ndarray, classes: list[str], subset: dict[str, int]) -> None:
    """A class the subset drops (or keeps under half its share) is a warning, not a silent number."""
    import warnings

    from core.data import class_mix_warnings
    from core.errors import WinnowWarning

    full = dict(zip(classes, (int(c) for c in np.bincount(y, minlength=len(classes)))))
    for w in class_mix_warnings(full, subset):
        warnings.warn(w, WinnowWarning, stacklevel=2)
