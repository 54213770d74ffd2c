"""Sub-commands of the data path: info, datasets, embed, export, decisions, jobs."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

from core import decisions, jobs, runs
from core.data import column as data_column
from core.cli.common import add_data_args, embedding_command, get_embeddings, open_data, print_table, progress, when
from core.errors import DataError, WinnowError
from core.runs import called
from core.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="rows, classes, text lengths, duplicates and label conflicts of DATA",
                       description="Load DATA, check it, register it in the workspace and summarise it.")
    add_data_args(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("datasets", help="list the datasets in the workspace")
    p.set_defaults(func=cmd_datasets)

    p = embedding_command(sub, "embed", "embed every text of DATA (cached on disk: a second run costs nothing)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="embed the uncached texts on this Dask cluster (e.g. tcp://host:8786; default: "
                        "$WINNOW_DASK_SCHEDULER, else here); every worker needs Winnow and the model")
    p.add_argument("--background", action="store_true", help="run as a background job and print its id")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("export", help="write the curated dataset (or a saved subset) and manifest.json",
                       description="Export all rows minus removals (or a saved subset minus removals) with a "
                                   "manifest of every removal, its reason and source.")
    add_data_args(p)
    p.add_argument("--format", choices=("csv", "jsonl", "parquet", "datasets"), default="csv")
    p.add_argument("--out", required=True, help="output file (or folder for --format datasets); the manifest goes "
                                                "to OUT.manifest.json (a folder: OUT/manifest.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing file Winnow did not write (a folder holding other files is never "
                        "emptied); an earlier, unchanged Winnow export is replaced without it")
    p.add_argument("--neutralise-formulas", action="store_true",
                   help="CSV only: prefix cells starting with = + - @ (or tab/CR) with ' so spreadsheets show them "
                        "as text (OWASP CSV injection advice); off by default so the export stays exact")
    p.add_argument("--subset", default=None, metavar="RUN_ID|FILE",
                   help="a saved subset: its run id (`python -m core runs --kind selection`) or a CSV with a uid "
                        "column")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("decisions", help="list, add or undo curation decisions",
                       description="Decisions are an append-only log: every change can be undone.")
    dsub = p.add_subparsers(dest="decisions_cmd", metavar="<action>")
    dsub.required = True
    q = dsub.add_parser("list", help="current decision per row")
    add_data_args(q)
    q.set_defaults(func=cmd_decisions_list)
    q = dsub.add_parser("log", help="the full history of decisions")
    add_data_args(q)
    q.set_defaults(func=cmd_decisions_log)
    q = dsub.add_parser("add", help="decide on rows: remove, keep (pin), relabel (a note) or clear")
    add_data_args(q)
    q.add_argument("action", choices=("remove", "keep", "relabel", "clear"))
    q.add_argument("uids", nargs="*", help="row uids (or --uids-file)")
    q.add_argument("--uids-file", default=None, help="a CSV with a uid column, or one uid per line")
    q.add_argument("--reason", default="", help="why (shown in the manifest)")
    q.add_argument("--note", default="", help="free text; for relabel: the new label (one of the classes), "
                                              "which the export writes")
    q.add_argument("--source", choices=("manual", "lasso", "rule", "selection"), default="manual")
    q.set_defaults(func=cmd_decisions_add)
    q = dsub.add_parser("import", help="re-apply an export's manifest (removals, pins, relabels) to DATA, by uid",
                        description="A manifest is a reusable recipe: its decisions are applied to the rows of DATA "
                                    "with the same uids; uids DATA lacks are counted and skipped.")
    add_data_args(q)
    q.add_argument("manifest", help="a manifest written by `python -m core export` (FILE.manifest.json, e.g. curated.csv.manifest.json)")
    q.set_defaults(func=cmd_decisions_import)
    q = dsub.add_parser("undo", help="undo one decision event (by id) or the last batch")
    add_data_args(q)
    q.add_argument("event", nargs="?", type=int, help="event id from `decisions log` (default: the last batch)")
    q.set_defaults(func=cmd_decisions_undo)

    p = sub.add_parser("jobs", help="background jobs: list, show, start, cancel, resume")
    jsub = p.add_subparsers(dest="jobs_cmd", metavar="<action>")
    jsub.required = True
    q = jsub.add_parser("list", help="recent jobs")
    q.add_argument("--limit", type=int, default=20)
    q.set_defaults(func=cmd_jobs_list)
    q = jsub.add_parser("show", help="one job with its log tail")
    q.add_argument("id")
    q.set_defaults(func=cmd_jobs_show)
    q = jsub.add_parser("start", help="start any step in the background: jobs start -- embed demo")
    q.add_argument("step", nargs=argparse.REMAINDER)
    q.set_defaults(func=cmd_jobs_start)
    q = jsub.add_parser("cancel", help="stop a running job")
    q.add_argument("id")
    q.set_defaults(func=cmd_jobs_cancel)
    q = jsub.add_parser("resume", help="start a dead, failed or cancelled job again from its checkpoint")
    q.add_argument("id")
    q.set_defaults(func=cmd_jobs_resume)


def cmd_info(args: argparse.Namespace, ws: Workspace) -> int:
    from core import data

    loaded = open_data(args, ws)
    summary = data.summarize(loaded.ds)
    if args.json:
        print(json.dumps({"dataset_id": loaded.dataset_id, **summary}, indent=2, default=str))
        return 0
    rec = loaded.record
    print(f"dataset {loaded.dataset_id}: {rec.name}  ({rec.source})")
    print(f"rows: {summary['rows']:,}   classes: {len(summary['classes'])}   "
          f"text column: {rec.text_col}   label column: {rec.label_col}")
    meta = [c for c in loaded.ds.column_names if c not in ("uid", "text", "label")]
    if meta:
        print(f"metadata columns: {', '.join(meta)}")
    print()
    counts = summary["classes"]
    items = counts.items() if isinstance(counts, dict) else [(c["label"], c["count"]) for c in counts]
    print_table([{"class": k, "rows": v, "share": v / summary["rows"]} for k, v in items])
    print()
    for key, label in (("length", "text length"), ("lengths", "text length")):
        if key in summary:
            print(f"{label}: " + "  ".join(f"{k} {v:,.0f}" for k, v in _flat(summary[key])))
    dup, con = summary.get("duplicates", {}), summary.get("conflicts", {})
    print(f"exact duplicate texts: {dup.get('groups', 0):,} texts in {dup.get('rows', 0):,} rows "
          f"({dup.get('extra', 0):,} extra copies)")
    print(f"texts with conflicting labels: {con.get('groups', 0):,} texts in {con.get('rows', 0):,} rows")
    trunc = summary.get("truncated")
    if trunc:
        print(f"texts longer than the model's {trunc['window']}-token window (cut when embedded): {trunc['rows']:,}")
    examples = con.get("examples") or []
    if examples:
        print()
        print_table([{"text": e["text"][:70], "copies": e["count"], "labels": e["labels"],
                      "rows": ", ".join(map(str, e["rows"]))} for e in examples[:5]])
    return 0


def _flat(d: dict, prefix: str = "") -> list:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.extend(_flat(v, f"{prefix}{k} "))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def cmd_datasets(args: argparse.Namespace, ws: Workspace) -> int:
    from core.data import _record_key

    active = ws.get_setting("active_dataset")
    every = ws.datasets()
    version: dict[int, int] = {}
    parent: dict[int, int] = {}
    groups: dict[str, list] = {}
    for d in every:
        groups.setdefault(json.dumps(_record_key(d), default=str), []).append(d)
    for members in groups.values():
        members.sort(key=lambda d: d.id)
        for i, d in enumerate(members):
            version[d.id] = i + 1
            if i:
                parent[d.id] = members[i - 1].id
    print_table([{"id": d.id, "active": "*" if d.id == active else "", "name": d.name, "version": version[d.id],
                  "previous": parent.get(d.id, ""), "rows": d.n_rows, "classes": len(d.classes), "source": d.source,
                  "loaded": when(d.created)} for d in every])
    return 0


def cmd_embed(args: argparse.Namespace, ws: Workspace) -> int:
    if args.background:
        argv = [a for a in sys.argv[1:] if a != "--background"]
        # drop global options that precede the step; the job adds its own
        step = argv[argv.index("embed"):]
        job_id = jobs.start(ws, step, label="embed")
        print(job_id)
        return 0
    loaded = open_data(args, ws)
    bar = progress(args, ws, "embed")
    t0 = time.time()
    emb_id, X = get_embeddings(args, ws, loaded, bar)
    bar.close(f"{X.shape[0]:,} texts embedded")
    print(f"embedding {emb_id}: {X.shape[0]:,} x {X.shape[1]} in {time.time() - t0:.1f} s")
    return 0


def cmd_export(args: argparse.Namespace, ws: Workspace) -> int:
    from core.export import export_dataset

    loaded = open_data(args, ws)
    subset_run = None
    if args.subset is not None:
        if args.subset.isdigit():
            subset_run = int(args.subset)
        else:
            subset_run = _subset_from_file(ws, loaded, args.subset)
    res = export_dataset(ws, loaded.dataset_id, loaded.ds, fmt=args.format, out=args.out,
                         subset_run_id=subset_run, overwrite=args.overwrite,
                         neutralise_formulas=args.neutralise_formulas)
    print(f"wrote {res.rows_after:,} of {res.rows_before:,} rows to {res.path}")
    if res.manifest.get("rows_relabelled"):
        print(f"relabelled: {res.manifest['rows_relabelled']:,} rows carry their new label")
    if res.manifest.get("formula_cells_neutralised"):
        print(f"formula neutralisation: {res.manifest['formula_cells_neutralised']:,} cells prefixed with '")
    print(f"manifest: {res.manifest_path}")
    return 0


def _read_uids(path: str) -> list[str]:
    import pandas as pd

    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().strip()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from e
    if "uid" in [c.strip() for c in first.split(",")]:
        return pd.read_csv(path, dtype=str, keep_default_na=False)["uid"].tolist()
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


def _subset_from_file(ws: Workspace, loaded, path: str) -> int:
    import pandas as pd

    uids = _read_uids(path)
    known = set(data_column(loaded.ds, "uid"))
    unknown = [u for u in uids if u not in known]
    if unknown:
        raise DataError(f"{path}: {len(unknown)} uids are not in {loaded.record.name} (e.g. {', '.join(unknown[:5])});"
                        " was the subset made from another dataset?")
    with runs.recorded(ws, "selection", dataset_id=loaded.dataset_id, method="file", params={"file": path}) as run:
        ws.save_run_frame(run.id, pd.DataFrame({"uid": uids, "cluster": -1, "reason": f"listed in {path}"}))
    return run.id


def _check_uids(loaded, uids: list[str]) -> None:
    known = set(data_column(loaded.ds, "uid"))
    unknown = [u for u in uids if u not in known]
    if unknown:
        raise DataError(f"{len(unknown)} uids are not in dataset {loaded.dataset_id} ({loaded.record.name}): "
                        f"{', '.join(unknown[:5])}; `python -m core decisions list` shows uids in use")


def cmd_decisions_list(args: argparse.Namespace, ws: Workspace) -> int:
    loaded = open_data(args, ws)
    state = decisions.current(ws, loaded.dataset_id)
    print_table([{"uid": d.uid, "action": d.action, "reason": d.reason, "note": d.note, "source": d.source,
                  "time": when(d.time), "event": d.event_id} for d in state.as_dict().values()])
    counts = state.counts
    print(f"\n{counts['remove']} removed, {counts['keep']} kept (pinned), {counts['relabel']} relabel notes")
    return 0


def cmd_decisions_import(args: argparse.Namespace, ws: Workspace) -> int:
    from core import decisions
    from core.workspace import SOURCES

    try:
        with open(args.manifest, encoding="utf-8") as f:
            manifest = json.load(f)
    except OSError as e:
        raise DataError(f"cannot read {args.manifest}: {e.strerror}") from e
    except ValueError as e:
        raise DataError(f"{args.manifest} is not JSON ({e}); pass a FILE.manifest.json written by the export") from e
    if not isinstance(manifest, dict) or "winnow_version" not in manifest or "removals" not in manifest:
        raise DataError(f"{args.manifest} is not a Winnow manifest (no winnow_version and removals); pass a "
                        "FILE.manifest.json written by `python -m core export`")
    loaded = open_data(args, ws)
    present = set(data_column(loaded.ds, "uid"))
    state = decisions.current(ws, loaded.dataset_id)
    wanted: list[tuple[str, str, str, str, str]] = []  # uid, action, reason, note, source
    for r in manifest.get("removals") or []:
        wanted.append((str(r["uid"]), "remove", r.get("reason") or "", r.get("note") or "", r.get("source") or ""))
    for r in manifest.get("relabels") or []:
        wanted.append((str(r["uid"]), "relabel", r.get("reason") or "", str(r["new"]), r.get("source") or ""))
    for r in manifest.get("other_decisions") or []:
        if r.get("action") in ("keep", "relabel"):
            wanted.append((str(r["uid"]), r["action"], r.get("reason") or "", r.get("note") or "",
                           r.get("source") or ""))
    gone = sorted({w[0] for w in wanted if w[0] not in present})
    batches: dict[tuple[str, str, str, str], list[str]] = {}
    same = 0
    for uid, action, reason, note, source in wanted:
        if uid not in present:
            continue
        now = state.get(uid)
        if now is not None and now.action == action and (action != "relabel" or now.note == note):
            same += 1
            continue
        batches.setdefault((action, reason, note, source if source in SOURCES else "rule"), []).append(uid)
    counts = {"remove": 0, "keep": 0, "relabel": 0}
    for (action, reason, note, source), uids in batches.items():
        decisions.record(ws, loaded.dataset_id, uids, action, reason=reason, note=note, source=source)
        counts[action] += len(uids)
    total = sum(counts.values())
    print(f"imported {total} decision(s) ({counts['remove']} removal(s), {counts['keep']} pin(s), "
          f"{counts['relabel']} relabel(s)) from {args.manifest} into dataset {loaded.dataset_id}"
          + (f"; {same} already in force" if same else ""))
    if gone:
        print(f"{len(gone)} uid(s) of the manifest are not in {loaded.record.name} (e.g. {', '.join(gone[:3])}); "
              "they were skipped")
    return 0


def cmd_decisions_log(args: argparse.Namespace, ws: Workspace) -> int:
    loaded = open_data(args, ws)
    print_table([{"event": e.id, "uid": e.uid, "action": e.action, "undoes": e.undoes or "", "reason": e.reason,
                  "note": e.note, "source": e.source, "time": when(e.time)} for e in ws.decision_log(loaded.dataset_id)])
    return 0


def cmd_decisions_add(args: argparse.Namespace, ws: Workspace) -> int:
    loaded = open_data(args, ws)
    uids = list(args.uids) + (_read_uids(args.uids_file) if args.uids_file else [])
    if not uids:
        raise DataError("no uids given; pass them after the action or with --uids-file")
    _check_uids(loaded, uids)
    if args.action == "relabel" and args.note not in loaded.classes:
        raise DataError(f"relabel needs the new label as --note, one of the classes "
                        f"{', '.join(map(repr, loaded.classes))} (got {args.note!r})")
    ids = decisions.record(ws, loaded.dataset_id, uids, args.action, reason=args.reason, note=args.note,
                           source=args.source)
    print(f"{args.action}: {len(ids)} rows (events {ids[0]}..{ids[-1]})")
    return 0


def cmd_decisions_undo(args: argparse.Namespace, ws: Workspace) -> int:
    loaded = open_data(args, ws)
    if args.event is not None:
        ws.undo(args.event)
        print(f"undid event {args.event}")
    else:
        undone = decisions.undo_last(ws, loaded.dataset_id)
        print(f"undid the last batch ({len(undone)} events)" if undone else "nothing to undo")
    return 0


def _job_row(j: jobs.Job, ws: Workspace | None = None) -> dict:
    run: Any = j.run_id or ""
    if j.run_id and ws is not None:  # the run it recorded, as a person names it: "subset 1 (run id 13)"
        with contextlib.suppress(WinnowError):
            run = called(ws, int(j.run_id))
    return {"id": j.id, "step": j.label, "status": j.status, "progress": f"{j.progress:.0%}",
            "message": j.message[:60], "started": when(j.started), "run": run}


def cmd_jobs_list(args: argparse.Namespace, ws: Workspace) -> int:
    print_table([_job_row(j, ws) for j in jobs.list_jobs(ws, args.limit)])
    return 0


def cmd_jobs_show(args: argparse.Namespace, ws: Workspace) -> int:
    j = jobs.get(ws, args.id)
    for k, v in _job_row(j, ws).items():
        print(f"{k:>9}: {v}")
    print(f"  command: {j.command}")
    print(f"      pid: {j.pid}")
    if j.error:
        print(f"    error: {j.error.strip().splitlines()[-1]}")
    tail = jobs.log_tail(j)
    if tail:
        print("\nlog tail:\n" + tail)
    return 0


def cmd_jobs_start(args: argparse.Namespace, ws: Workspace) -> int:
    step = [a for a in args.step if a != "--"]
    if not step:
        raise WinnowError("name the step to start, e.g. `python -m core jobs start -- embed demo`")
    print(jobs.start(ws, step))
    return 0


def cmd_jobs_cancel(args: argparse.Namespace, ws: Workspace) -> int:
    j = jobs.cancel(ws, args.id)
    print(f"job {j.id}: {j.status}")
    return 0


def cmd_jobs_resume(args: argparse.Namespace, ws: Workspace) -> int:
    print(jobs.resume(ws, args.id))
    return 0
