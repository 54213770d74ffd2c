"""Sub-commands of valuation: value (one method over every row), audit (the flipped-label self-check), runs."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from core.cli import common
from core.errors import DataError
from core.runs import called
from core.valuation import registry, store
from core.valuation.audit import DEFAULT_METHODS as AUDIT_METHODS
from core.valuation.base import COLUMNS
from core.valuation.consensus import DEFAULT_MEMBERS
from core.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("value", help="value every row of DATA (default: TS-DShapley) and record the run",
                       description="Embed DATA (cached), value every row with one method, record the run in the "
                                   "workspace and optionally write uid,value,stderr,count to --out. Higher = more "
                                   "helpful; Shapley-type values below 0 are harmful. Without --valid, a stratified "
                                   "10 % (at most 2,000 rows) is held out and valued by swapping roles. An "
                                   "unfinished run with the same options is resumed from its checkpoint.")
    add_value_args(p)
    p.set_defaults(func=cmd_value)

    p = common.embedding_command(
        sub, "audit", "flip a seeded share of labels and report how well each method finds them",
        "A self-check on your own data: flip --flip of the labels in a copy, value it with each method, and print "
        "ROC-AUC and precision at the number flipped.")
    p.add_argument("--flip", type=float, default=0.05, help="share of labels to flip (default 0.05)")
    p.add_argument("--methods", default=_names(AUDIT_METHODS), metavar="M1,M2",
                   help=f"methods to compare (default {_names(AUDIT_METHODS)}; consensus combines the others with "
                        "cross-fitted weights)")
    p.add_argument("--valid", default=None, metavar="FILE", help="validation file (default: a held-out split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the flips and the methods (default 0)")
    p.add_argument("--agreement", default=None, metavar="COLUMN",
                   help="a numeric column of human agreement with each row's label (e.g. the share of annotators "
                        "who chose it): also report each method's Spearman with it, and let the consensus' weights "
                        "track it (cross-fitted)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("runs", help="list the runs recorded in the workspace")
    p.add_argument("--kind", default=None, help="values, audit, clusters, selection, finetune, compare, ...")
    p.add_argument("--method", default=None, help="only runs of this method")
    p.add_argument("--limit", type=int, default=30, help="newest N (default 30)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.set_defaults(func=cmd_runs)


def add_value_args(p: argparse.ArgumentParser) -> None:
    """The options of `value` (DATA, embedding, method and its flags), shared with `first-run`."""
    names = [s.name for s in registry.REGISTRY.values()]
    common.add_data_args(p)
    common.add_embed_args(p)
    p.add_argument("--method", default="ts-dshapley", metavar="M",
                   help=f"one of {', '.join(names)} (default ts-dshapley; underscores work too)")
    p.add_argument("--valid", default=None, metavar="FILE",
                   help="validation file with the same text/label columns (default: a held-out split)")
    p.add_argument("--out", default=None, metavar="CSV", help="write uid,value,stderr,count here")
    p.add_argument("--seed", type=int, default=0, help="seed of splits and sampling (default 0)")
    p.add_argument("--valid-fraction", type=float, default=None, metavar="F",
                   help="share held out as validation when no --valid is given (default 0.5 for TS-DShapley, whose "
                        "scale does not depend on it, 0.1 for the others; at most 2,000 rows)")
    p.add_argument("--suggest-removal", action="store_true",
                   help="also search the best number of lowest-valued rows to remove (recorded with the run)")
    p.add_argument("--members", default=None, metavar="M1,M2",
                   help=f"consensus members (default {_names(DEFAULT_MEMBERS)})")
    p.add_argument("--weights", default="self-check", choices=("self-check", "equal"),
                   help="consensus weights: learned on a self-check copy with 10 %% of labels flipped, cross-fitted "
                        "(default; values the data twice), or equal")
    p.add_argument("--agreement", default=None, metavar="COLUMN",
                   help="consensus with self-check weights: a numeric column of human agreement with each row's "
                        "label (e.g. the demo's confidence); the weights then track it too, cross-fitted")
    p.add_argument("--clean-valid", type=float, default=0.2, metavar="P",
                   help="without --valid: leave out of the held-out validation rows those whose label a cross-fitted "
                        "classifier gives probability < P (default 0.2; 0 keeps them all); they are still valued")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if an unfinished run matches")
    g = p.add_argument_group("method options (passed to the methods that take them)")
    for name, (opt, specs) in registry.all_options().items():
        defaults = ", ".join(f"{s.name} {next(o for o in s.options if o.name == name).default}" for s in specs)
        hlp = f"{opt.help} (default: {defaults})"
        if opt.type is bool:
            g.add_argument(opt.flag, dest=name, action="store_const", const=True, default=None, help=hlp)
        elif opt.choices:
            g.add_argument(opt.flag, dest=name, type=lambda v: v.replace("-", "_"), choices=opt.choices,
                           default=None, help=hlp)
        else:
            g.add_argument(opt.flag, dest=name, type=opt.type, default=None, help=hlp)


# ------------------------------------------------------------------------------------------------- helpers
def _names(keys: Any) -> str:
    return ",".join(k.replace("_", "-") for k in keys)


def _method_options(args: argparse.Namespace, key: str) -> dict[str, Any]:
    """The method flags the user gave that the method takes (snake_case keys), checked."""
    spec = registry.REGISTRY[key]
    given = {o.name: getattr(args, o.name) for o in spec.options if getattr(args, o.name, None) is not None}
    return spec.check_options(given)


def _valid_split(args: argparse.Namespace, ws: Workspace, classes: list[str], progress: Any):
    """Load, check and embed the --valid file as a Split whose labels are codes into the data's classes."""
    from core import data
    from core.valuation import Split

    if not args.valid:
        return None, None
    loaded = data.open_dataset(ws, args.valid, text_col=args.text_col, label_col=args.label_col,
                               encoding=args.encoding)
    extra = sorted(set(loaded.classes) - set(classes))
    if extra:
        raise DataError(f"--valid {args.valid} has label(s) {', '.join(map(repr, extra))} that the data lacks "
                        f"(data classes: {', '.join(classes)}); drop those rows")
    missing = sorted(set(classes) - set(loaded.classes))
    if missing:
        raise DataError(f"class(es) {', '.join(map(repr, missing))} missing from --valid {args.valid}; every class "
                        f"needs validation rows (or leave out --valid to hold out a split)")
    lw = common.Loaded(dataset_id=loaded.dataset_id, ds=loaded.ds, classes=list(loaded.classes),
                       record=loaded.record, warnings=list(loaded.warnings))
    emb_id, Xv = common.get_embeddings(args, ws, lw, progress)
    yv = data.label_codes(loaded.ds, classes)
    return Split(np.asarray(data.column(loaded.ds, "uid")).astype(str), np.asarray(Xv), yv), loaded.dataset_id


def _embedded(args: argparse.Namespace, ws: Workspace, prog: Any):
    """Open DATA and embed it; returns (loaded, embedding id, X, y, uids, e) where progress [0, e] was embedding."""
    from core import data

    loaded = common.open_data(args, ws)
    e = common.embedding_share(args, ws, loaded)
    emb_id, X = common.get_embeddings(args, ws, loaded, prog.stage(0.0, e, "embedding"))
    y = data.label_codes(loaded.ds, loaded.classes)
    uids = np.asarray(data.column(loaded.ds, "uid")).astype(str)
    return loaded, emb_id, np.asarray(X), y, uids, e


def agreement_column(ds: Any, name: str) -> np.ndarray:
    """A numeric column of the data as floats (NaN where empty or not a number); DataError naming the fix."""
    import pandas as pd

    from core import data

    if name in ("uid", "text", "label") or name not in ds.column_names:
        others = [c for c in ds.column_names if c not in ("uid", "text", "label")]
        raise DataError(f"--agreement {name}: the data has no such extra column (its extra columns: "
                        f"{', '.join(others) or 'none'}); name a numeric column of human agreement")
    v = pd.to_numeric(pd.Series(data.column(ds, name)), errors="coerce").to_numpy(dtype=float)
    if np.isfinite(v).sum() < 3:
        raise DataError(f"--agreement {name}: the column has only {int(np.isfinite(v).sum())} numeric value(s); "
                        f"it needs numbers (e.g. the share of annotators who chose the label)")
    return v


# ------------------------------------------------------------------------------------------------- value
def value_options(args: argparse.Namespace, key: str, valid_id: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the method's options, the run's recorded params) of a `value` command: the params key a resumable run."""
    opts = _method_options(args, key)
    if key == "consensus":
        if args.members:
            opts["members"] = [registry.method_key(m) for m in args.members.split(",") if m.strip()]
        member_opts = {}
        for m in opts.get("members") or DEFAULT_MEMBERS:
            mo = _method_options(args, m)
            if mo:
                member_opts[m] = mo
        opts = {k: v for k, v in opts.items() if k == "members"}
        if member_opts:
            opts["member_options"] = member_opts
        opts["weights"] = args.weights.replace("-", "_")
        if getattr(args, "agreement", None):
            opts["agreement_name"] = args.agreement
    elif getattr(args, "agreement", None):
        raise DataError(f"--agreement is an option of the consensus (got --method {key.replace('_', '-')}); use "
                        f"--method consensus, or the self-check: audit --agreement {args.agreement}")
    if args.valid_fraction is not None and not 0 < args.valid_fraction < 1:
        raise DataError(f"--valid-fraction must be between 0 and 1 (got {args.valid_fraction})")
    if not 0 <= args.clean_valid < 1:
        raise DataError(f"--clean-valid must be between 0 and 1 (got {args.clean_valid})")
    run_params = {"seed": args.seed, "options": opts, "valid_dataset": valid_id,
                  "valid_fraction": args.valid_fraction, "clean_valid": args.clean_valid,
                  "suggest_removal": bool(args.suggest_removal), "model": getattr(args, "model", None)}
    return opts, run_params


def cmd_value(args: argparse.Namespace, ws: Workspace) -> int:
    key = registry.method_key(args.method)
    prog = common.progress(args, ws, f"value ({key.replace('_', '-')})")
    try:
        return value_with_progress(args, ws, key, prog)
    finally:
        prog.bar.close()  # before any error line, so the message stays the last line


def value_with_progress(args: argparse.Namespace, ws: Workspace, key: str, prog: Any) -> int:
    """`value` with its progress given: the command, and `first-run` with a slice of its own bar."""
    value_options(args, key, None)  # options checked before the (long) embedding
    loaded, emb_id, X, y, uids, e = _embedded(args, ws, prog)
    valid, valid_id = _valid_split(args, ws, loaded.classes, prog.stage(e, e + 0.05, "embedding --valid"))
    opts, run_params = value_options(args, key, valid_id)
    call_opts = dict(opts)
    if opts.get("agreement_name"):
        call_opts["agreement"] = agreement_column(loaded.ds, opts["agreement_name"])
    run_id, values, result = store.record_values(
        ws, loaded.dataset_id, X, y, uids, method=key, options=call_opts, run_params=run_params,
        embedding_id=emb_id,
        job_id=getattr(args, "job", None), valid=valid, seed=args.seed, classes=loaded.classes,
        valid_fraction=args.valid_fraction, suggest_removal=args.suggest_removal,
        clean_valid=args.clean_valid or None, resume=not args.no_resume,
        on_progress=prog.stage(e + 0.05, 1.0),
        on_resume=lambda rid, done: print(f"resuming run: {called(ws, rid)}, from its checkpoint ({done:.0%} done)",
                                          file=sys.stderr))
    removal = values.params.get("removal")
    prog.close(f"{called(ws, run_id)} done")
    if args.out:
        values.to_frame()[list(COLUMNS)].to_csv(args.out, index=False)
    print(f"{called(ws, run_id)}: {key.replace('_', '-')} valued {len(values):,} rows in {values.seconds:.1f} s; "
          f"{result['n_negative']:,} below 0" + (f"; wrote {args.out}" if args.out else ""))
    if removal:
        print(f"suggested removal: the {removal['n_remove_total']:,} lowest-valued rows "
              f"({removal['fraction']:.1%}); proxy accuracy {removal['baseline']:.4f} -> {removal['score']:.4f} "
              f"({removal['scoring']})")
        for w in removal.get("warnings", []):
            print(f"winnow: warning: {w}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------------- audit
def cmd_audit(args: argparse.Namespace, ws: Workspace) -> int:
    keys = [registry.method_key(m) for m in args.methods.split(",") if m.strip()]
    if not keys:
        raise DataError("--methods is empty; name at least one method, e.g. --methods ts-dshapley,knn-shapley")
    prog = common.progress(args, ws, "audit")
    try:
        return _audit(args, ws, keys, prog)
    finally:
        prog.bar.close()


def _audit(args: argparse.Namespace, ws: Workspace, keys: list[str], prog: Any) -> int:
    loaded, emb_id, X, y, uids, e = _embedded(args, ws, prog)
    valid, valid_id = _valid_split(args, ws, loaded.classes, prog.stage(e, e + 0.05, "embedding --valid"))
    agreement = agreement_column(loaded.ds, args.agreement) if args.agreement else None
    run_id, rows, flipped = store.record_audit(
        ws, loaded.dataset_id, X, y, uids, methods=keys, flip=args.flip, seed=args.seed, valid=valid,
        valid_dataset=valid_id, classes=loaded.classes, agreement=agreement, agreement_name=args.agreement,
        embedding_id=emb_id, job_id=getattr(args, "job", None), on_progress=prog.stage(e + 0.05, 1.0, "audit"))
    prog.close(f"{called(ws, run_id)} done")
    print(f"{called(ws, run_id)}: {int(flipped.sum()):,} of {len(uids):,} labels flipped ({args.flip:.0%}, "
          f"seed {args.seed}); ROC-AUC of low value for the flipped rows, precision among the "
          f"{int(flipped.sum()):,} lowest-valued rows")
    common.print_table([{"method": r["method"], "ROC-AUC": r["auc"], "precision@flipped": r["precision_at_k"],
                         **({f"Spearman with {args.agreement}": r["agreement"]} if args.agreement else {}),
                         "seconds": r["seconds"]} for r in rows], floatfmt=".3f")
    return 0


# ------------------------------------------------------------------------------------------------- runs
def _brief(run: Any) -> str:
    r = run.result or {}
    if run.kind == "values" and "n_rows" in r:
        s = f"{r['n_rows']:,} rows, {r.get('n_negative', 0):,} < 0"
        if r.get("suggested_removal") is not None:
            s += f", remove {r['suggested_removal']:,}"
        return s
    if run.kind == "audit" and "rows" in r:
        return "; ".join(f"{x['method']} AUC {x['auc']:.3f}" for x in r["rows"])
    if "error" in r:
        return f"error: {str(r['error'])[:60]}"
    return ", ".join(f"{k}={v}" for k, v in list(r.items())[:3] if not isinstance(v, (dict, list)))[:80]


def cmd_runs(args: argparse.Namespace, ws: Workspace) -> int:
    runs = ws.runs(args.kind, method=args.method.replace("-", "_") if args.method else None)[: args.limit]
    if args.json:
        print(json.dumps([{"id": r.id, "name": r.name, "kind": r.kind, "dataset_id": r.dataset_id, "method": r.method,
                           "status": r.status, "seconds": r.seconds, "created": r.created, "params": r.params,
                           "result": r.result} for r in runs], indent=2, default=str))
        return 0
    common.print_table([{"id": r.id, "name": r.name, "kind": r.kind, "dataset": r.dataset_id,
                         "method": (r.method or "").replace("_", "-"), "status": r.status,
                         "created": common.when(r.created),
                         "seconds": None if r.seconds is None else round(r.seconds, 1), "summary": _brief(r)}
                        for r in runs])
    return 0
