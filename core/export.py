"""Export the curated dataset (all rows minus removals, or a saved subset) with a manifest of what was removed and why.

Formats: csv, jsonl, parquet, or a `datasets` folder (save_to_disk). Every kept row's every cell is written as it was
read: a CSV/TSV cell byte for byte (as text), a JSON value as the same JSON value, a Parquet or `datasets` column
with its type; a relabelled row gets its new label. JSON output is strict (`null`, never `NaN`). The manifest names
the reader that gives the cells back (`reader`), carries the data's sha256, and is published together with the data:
the old manifest is removed first and the new one renamed into place last, so a manifest beside data always
describes that data. Nothing Winnow did not write is replaced without `overwrite=True`, and a folder holding files
that are not Winnow's is never emptied.
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core import __version__
from core import procs
from core.errors import DataError
from core.workspace import Workspace

Format = Literal["csv", "jsonl", "parquet", "datasets"]
FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet", "datasets")
_SUFFIX = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet", "datasets": ""}
MANIFEST_SUFFIX = ".manifest.json"
FOLDER_MANIFEST = "manifest.json"
_TMP_TAG = ".winnow-tmp-"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # OWASP: cells a spreadsheet may run as a formula

# How to read each format back so that the cells come back as written (the manifest's `reader`).
READERS: dict[str, dict[str, Any]] = {
    "csv": {"call": "pandas.read_csv", "kwargs": {"dtype": "str", "keep_default_na": False, "na_filter": False}},
    "jsonl": {"call": "pandas.read_json", "kwargs": {"lines": True, "dtype": False, "convert_dates": False,
                                                       "precise_float": True}},
    "parquet": {"call": "pandas.read_parquet", "kwargs": {}},
    "datasets": {"call": "datasets.load_from_disk", "kwargs": {}},
}
_READ_BACK = {
    "csv": "pandas.read_csv(file, dtype=str, keep_default_na=False, na_filter=False)",
    "jsonl": "pandas.read_json(file, lines=True, dtype=False, convert_dates=False, precise_float=True), "
             "or json.loads on each line",
    "parquet": "pandas.read_parquet(file) or datasets.load_dataset('parquet', data_files=file)",
    "datasets": "datasets.load_from_disk(folder)",
}


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the data file or folder
    manifest_path: Path
    rows_before: int
    rows_after: int
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """The decisions at one moment: the export's data and its manifest are both built from this one read."""

    version: int
    removed: frozenset[str]
    relabels: dict[str, str]
    records: list[dict[str, Any]] = field(default_factory=list)  # uid, action, reason, note, source, time, label


def snapshot(ws: Workspace, dataset_id: int) -> Snapshot:
    """Read the current decisions once (`core.decisions.current`).

    A relabel applies when its new label is one of the dataset's classes; an older free-text relabel note that
    names no class stays a note in the manifest.
    """
    from core import decisions

    state = decisions.current(ws, dataset_id)
    try:
        classes = set(ws.dataset(dataset_id).classes)
    except Exception:  # noqa: BLE001 - an unregistered id: no relabel can be checked, none applies
        classes = set()
    frame = state.frame
    records = [{"uid": str(r.uid), "action": str(r.action), "reason": str(r.reason), "note": str(r.note),
                "source": str(r.source), "time": float(r.time),
                "label": None if r.label is None else str(r.label)} for r in frame.itertuples(index=False)]
    relabels = {u: lab for u, lab in state.relabels.items() if lab in classes}
    return Snapshot(version=state.version, removed=frozenset(state.removed), relabels=relabels, records=records)


def curated_uids(ws: Workspace, dataset_id: int, uids: list[str], subset_run_id: int | None = None,
                 snap: Snapshot | None = None) -> tuple[list[str], dict[str, Any]]:
    """The uids to export, in dataset order, and a description of how they were chosen."""
    removed = (snap or snapshot(ws, dataset_id)).removed
    info: dict[str, Any] = {"what": "curated full set (all rows minus removals)"}
    if subset_run_id is not None:
        run = ws.run(subset_run_id)
        if run.kind != "selection":
            raise DataError(f"run {subset_run_id} is a {run.kind} run, not a saved subset; "
                            "`python -m core runs --kind selection` lists subsets")
        if run.dataset_id != dataset_id:
            raise DataError(f"subset {subset_run_id} belongs to dataset {run.dataset_id}, not {dataset_id}")
        chosen = set(ws.load_run_frame(subset_run_id)["uid"].astype(str))
        info = {"what": f"saved subset {run.number} minus removals", "subset_run": subset_run_id,
                "strategy": run.method, "params": run.params, "subset_rows": len(chosen)}
        keep = [u for u in uids if u in chosen and u not in removed]
    else:
        keep = [u for u in uids if u not in removed]
    return keep, info


def _values_runs(ws: Workspace, dataset_id: int, subset_info: dict[str, Any]) -> list[dict[str, Any]]:
    ids: list[int] = []
    params = subset_info.get("params") or {}
    for key in ("values_run", "values_run_id", "run_id"):
        if isinstance(params.get(key), int):
            ids.append(params[key])
    latest = ws.latest_run("values", dataset_id=dataset_id)
    if latest is not None and latest.id not in ids:
        ids.append(latest.id)
    out = []
    for i in ids:
        r = ws.run(i)
        out.append({"run": r.id, "method": r.method, "params": r.params, "seconds": r.seconds,
                    "suggested_removal": r.result.get("suggested_removal")})
    return out


def build_manifest(ws: Workspace, dataset_id: int, uids: list[str], keep: list[str], subset_info: dict[str, Any],
                   fmt: str, file_name: str, snap: Snapshot | None = None,
                   old_labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of one export, built from `snap` (the same snapshot the data was written from)."""
    rec = ws.dataset(dataset_id)
    snap = snap or snapshot(ws, dataset_id)
    keep_set, uid_set = set(keep), set(uids)
    old_labels = old_labels or {}
    removals = [{"uid": r["uid"], "reason": r["reason"], "note": r["note"], "source": r["source"],
                 "time": _iso(r["time"])} for r in snap.records if r["action"] == "remove"]
    relabels = [{"uid": r["uid"], "old": old_labels.get(r["uid"]), "new": snap.relabels[r["uid"]],
                 "reason": r["reason"], "note": r["note"], "source": r["source"], "time": _iso(r["time"]),
                 "exported": r["uid"] in keep_set}
                for r in snap.records if r["action"] == "relabel" and r["uid"] in snap.relabels]
    notes = [{"uid": r["uid"], "action": r["action"], "reason": r["reason"], "note": r["note"],
              "source": r["source"], "time": _iso(r["time"]), "exported": r["uid"] in keep_set}
             for r in snap.records if r["action"] in ("keep", "relabel") and r["uid"] not in snap.relabels]
    n_removed = len(snap.removed & uid_set)
    return {
        "winnow_version": __version__,
        "created": _iso(None),
        "dataset": {"id": rec.id, "name": rec.name, "source": rec.source, "fingerprint": rec.fingerprint,
                    "classes": rec.classes, "text_column": rec.text_col, "label_column": rec.label_col},
        "decisions_version": snap.version,
        "rows_before": len(uids),
        "rows_after": len(keep),
        "rows_removed_by_decision": n_removed,
        "rows_left_out_by_subset": len(uids) - len(keep) - n_removed,
        "rows_relabelled": sum(1 for r in relabels if r["exported"]),
        "selection": subset_info,
        "valuation": _values_runs(ws, dataset_id, subset_info),
        "removals": removals,
        "relabels": relabels,
        "other_decisions": notes,
        "format": fmt,
        "file": file_name,
        "read_back": _READ_BACK[fmt],
        "reader": READERS[fmt],
    }


def _iso(ts: float | None) -> str:
    t = _dt.datetime.now(_dt.timezone.utc) if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    return t.isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------- the cells written


def _json_safe(v: Any) -> Any:
    """A value strict JSON can hold: NaN and infinities become null, dates ISO text, bytes text."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if v is None or isinstance(v, (str, int, bool)):
        return v
    try:
        f = float(v)  # Decimal and friends
        return f if math.isfinite(f) else None
    except (TypeError, ValueError):
        return str(v)


def _cell_text(v: Any) -> str:
    """A value as a CSV cell: text as is, missing as an empty cell, others in their usual text form."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(_json_safe(v), ensure_ascii=False)
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return str(v)


def _coerce_like(new: str, old: Any) -> Any:
    """A new label in the type of the cell it replaces (an int label column stays int)."""
    if isinstance(old, bool) or old is None or isinstance(old, str):
        return new
    try:
        if isinstance(old, int):
            return int(new)
        if isinstance(old, float):
            return float(new)
    except ValueError:
        pass
    return new


@dataclass
class _Columns:
    """The exported columns: `values` (Python values for text formats) and `arrays` (typed, for Parquet/datasets)."""

    names: list[str]
    values: dict[str, list[Any]]
    arrays: dict[str, Any]
    old_labels: dict[str, Any]


def _columns(ws: Workspace, dataset_id: int, ds: Any, idx: list[int], relabels: dict[str, str]) -> _Columns:
    import pyarrow as pa

    from core.data import read_originals

    # the kept rows taken from the dataset's arrow table in one `take` (few chunks). `ds.select(idx)` first hashed the
    # index list for its fingerprint and gathered a chunk per run of kept rows: at 800,000 rows of 1M, 11 of the
    # export's 25 s (benchmarks/bench_decisions_scale.py)
    table = ds.with_format("arrow")[:].take(pa.array(idx, type=pa.int64()))
    uids = [str(u) for u in table.column("uid").to_pylist()]
    names = list(table.column_names)
    values = {n: table.column(n).to_pylist() for n in names}
    arrays: dict[str, Any] = {n: table.column(n) for n in names}
    try:
        rec = ws.dataset(dataset_id)
        orig = read_originals(rec)
    except Exception:  # noqa: BLE001 - a dataset registered without a saved copy (tests, older workspaces)
        orig = None
    if orig is not None:
        pos = {u: i for i, u in enumerate(orig.column("uid").to_pylist())}
        where = [pos.get(u) for u in uids]
        found = all(w is not None for w in where)
        take = pa.array(where, type=pa.int64())
        for cname in orig.column_names:
            kind, _, col = cname.partition(":")
            if col not in values or kind not in ("raw", "json"):
                continue
            picked = orig.column(cname).take(take)
            cells = picked.to_pylist()
            mine = values[col]
            if kind == "raw":
                values[col] = [o if w is not None else m for o, m, w in zip(cells, mine, where)]
                arrays[col] = picked if found else _typed_or_text(values[col], like=picked)
            else:
                decoded = [json.loads(t) if t is not None and w is not None else m
                           for t, m, w in zip(cells, mine, where)]
                values[col] = decoded
                arrays[col] = _typed_or_none(decoded, arrays[col])
    old_labels = {u: values["label"][i] for i, u in enumerate(uids) if u in relabels}
    if relabels:
        labels = values["label"]
        new = [(_coerce_like(relabels[u], labels[i]) if u in relabels else labels[i]) for i, u in enumerate(uids)]
        values["label"] = new
        arrays["label"] = _typed_or_text(new, like=arrays["label"])
    return _Columns(names, values, arrays, old_labels)


def _typed_or_none(values: list[Any], fallback: Any) -> Any:
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if len(kinds) == 1 and kinds <= {str, int, float, bool}:
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return fallback


def _typed_or_text(values: list[Any], like: Any = None) -> Any:
    import pyarrow as pa

    if like is not None:
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            return pa.array(values, type=like.type)
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array(values)
    return pa.array([None if v is None else _cell_text(v) for v in values], type=pa.string())


def _neutralise(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _write_csv(cols: _Columns, path: Path, neutralise: bool) -> int:
    changed = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        w.writerow(cols.names)
        columns = [cols.values[n] for n in cols.names]
        for row in zip(*columns):
            cells = [_cell_text(v) for v in row]
            if neutralise:
                new = [_neutralise(c) for c in cells]
                changed += sum(a != b for a, b in zip(cells, new))
                cells = new
            w.writerow(cells)
        f.flush()
        os.fsync(f.fileno())
    return changed


def _write_jsonl(cols: _Columns, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        columns = [cols.values[n] for n in cols.names]
        for row in zip(*columns):
            rec = {n: _json_safe(v) for n, v in zip(cols.names, row)}
            f.write(json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _table(cols: _Columns) -> Any:
    import pyarrow as pa

    arrays = []
    for n in cols.names:
        a = cols.arrays[n]
        arrays.append(a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a)
    return pa.table(dict(zip(cols.names, arrays)))


def _write_parquet(cols: _Columns, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_table(cols), path)


def _write_datasets(cols: _Columns, folder: Path) -> None:
    import datasets
    from datasets.table import InMemoryTable

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        datasets.Dataset(InMemoryTable(_table(cols))).save_to_disk(str(folder))
    finally:
        if was:
            datasets.enable_progress_bars()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- where it may write


def manifest_path_for(out: Path, fmt: str) -> Path:
    """`<out>.manifest.json` beside a file (out.csv and out.jsonl keep one each); `<out>/manifest.json` in a folder."""
    return out / FOLDER_MANIFEST if fmt == "datasets" else out.with_name(out.name + MANIFEST_SUFFIX)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and "winnow_version" in m else None


_DATASETS_FILES = re.compile(r"^(state\.json|dataset_info\.json|data-\d+-of-\d+\.arrow|manifest\.json)$")


def _ours(out: Path, fmt: str) -> bool:
    """True when `out` is an earlier Winnow export left as Winnow wrote it (so replacing it loses nothing)."""
    if fmt == "datasets":
        m = _read_manifest(out / FOLDER_MANIFEST)
        if m is None:
            return False
        return all(p.is_file() and _DATASETS_FILES.match(p.name) for p in out.iterdir())
    m = _read_manifest(manifest_path_for(out, fmt))
    return m is not None and m.get("file") == out.name and m.get("sha256") == _sha256(out)


def check_target(out: Path, fmt: str, *, overwrite: bool) -> None:
    """Refuse to replace what Winnow did not write (unless `overwrite`), and never empty a foreign folder.

    Raises:
        DataError: With the path and what to do instead.
    """
    if fmt == "datasets":
        if out.exists() and not out.is_dir():
            raise DataError(f"{out} is a file, not a folder; --format datasets writes a folder: give a new folder name")
        if out.is_dir() and any(out.iterdir()) and not _ours(out, fmt):
            files = [p for p in out.iterdir()]
            dataset_only = all(p.is_file() and _DATASETS_FILES.match(p.name) for p in files)
            if not (overwrite and dataset_only):
                raise DataError(
                    f"{out} is a folder holding {len(files)} file(s) Winnow did not write; Winnow never empties such "
                    "a folder: give a new folder name" + ("" if dataset_only else "")
                    + (" (or pass --overwrite to replace a folder written by datasets.save_to_disk)"
                       if dataset_only else "")
                )
        return
    if out.is_dir():
        raise DataError(f"{out} is a folder; give a file name such as {out / ('curated' + _SUFFIX[fmt])}")
    if overwrite:
        return
    if out.exists() and not _ours(out, fmt):
        raise DataError(f"{out} already exists and is not an unchanged Winnow export; pass --overwrite to replace "
                        "it, or choose another name")
    mpath = manifest_path_for(out, fmt)
    if mpath.exists() and _read_manifest(mpath) is None:
        raise DataError(f"{mpath} already exists and is not a Winnow manifest; pass --overwrite to replace it, or "
                        "choose another name")


def _disk_full(e: OSError, need: int, out: Path) -> DataError:
    mb = max(1, math.ceil(need / 1e6))
    return DataError(f"disk full: {mb} MB needed to write {out} (the partial files were removed); free some space "
                     "on that disk or export to another folder")


# ---------------------------------------------------------------------------------------------- export


def export_dataset(ws: Workspace, dataset_id: int, ds: Any, *, fmt: str, out: str | os.PathLike[str],
                   subset_run_id: int | None = None, overwrite: bool = False,
                   neutralise_formulas: bool = False) -> ExportResult:
    """Write the curated rows of `ds` to `out` and its manifest beside it, both from one snapshot of the decisions.

    Args:
        ds: The loaded `datasets.Dataset` (uid, text, label, metadata columns).
        fmt: csv, jsonl, parquet or datasets.
        out: The file (or folder for `datasets`). For a file, the manifest goes to `<out>.manifest.json`; for a
            folder, to `<out>/manifest.json`.
        subset_run_id: Export this saved subset (minus removals) instead of the curated full set.
        overwrite: Replace a file that Winnow did not write (a folder holding other files is never emptied).
        neutralise_formulas: CSV only: prefix cells that begin with = + - @ tab or CR with a ' (OWASP), so a
            spreadsheet shows them as text. Off by default: exports stay exact.

    Raises:
        DataError: Unknown format, nothing left to export, an output that is not Winnow's, or a full disk.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if neutralise_formulas and fmt != "csv":
        raise DataError("formula neutralisation applies to CSV only; use --format csv or drop the option")
    out = Path(out)
    if fmt != "datasets" and out.suffix == "":
        out = out.with_suffix(_SUFFIX[fmt])
    if out.parent.is_dir():
        _recover(out, fmt)
    check_target(out, fmt, overwrite=overwrite)
    from core.data import column

    uids = [str(u) for u in column(ds, "uid")]
    snap = snapshot(ws, dataset_id)  # the one read of the decisions: data and manifest both come from it
    keep, info = curated_uids(ws, dataset_id, uids, subset_run_id, snap)
    if not keep:
        raise DataError("nothing left to export: every row is removed or outside the subset; "
                        "undo some removals (`python -m core decisions undo`) or pick another subset")
    keep_set = set(keep)
    idx = [i for i, u in enumerate(uids) if u in keep_set]
    relabels = {u: lab for u, lab in snap.relabels.items() if u in keep_set}
    cols = _columns(ws, dataset_id, ds, idx, relabels)
    manifest = build_manifest(ws, dataset_id, uids, keep, info, fmt, out.name, snap, cols.old_labels)
    manifest["formula_neutralisation"] = bool(neutralise_formulas)

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the folder {out.parent}: {e.strerror}; choose a writable place") from e
    mpath = manifest_path_for(out, fmt)
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{_TMP_TAG}{os.getpid()}-"))
    except OSError as e:
        raise DataError(f"cannot write in {out.parent}: {e.strerror}; choose a writable place") from e
    try:
        data = tmp / "data"
        if fmt == "csv":
            manifest["formula_cells_neutralised"] = _write_csv(cols, data, neutralise_formulas)
        elif fmt == "jsonl":
            _write_jsonl(cols, data)
        elif fmt == "parquet":
            _write_parquet(cols, data)
        else:
            _write_datasets(cols, data)
        if fmt == "datasets":
            manifest["files"] = {p.name: _sha256(p) for p in sorted(data.iterdir()) if p.is_file()}
            (data / FOLDER_MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
            _publish_folder(data, out, tmp)
        else:
            manifest["sha256"] = _sha256(data)
            mtmp = tmp / "manifest"
            mtmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
            _publish_file(data, mtmp, out, mpath, tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(e, _size_needed(ds, idx), out) from e
        raise DataError(f"cannot write {out}: {e.strerror or e}; choose a writable place") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    return ExportResult(path=out, manifest_path=mpath, rows_before=len(uids), rows_after=len(keep),
                        manifest=manifest)


def _publish_file(data: Path, mtmp: Path, out: Path, mpath: Path, tmp: Path) -> None:
    """Publish data and manifest so that a manifest beside the data always describes it.

    The old manifest is moved aside first (into `tmp`), the data renamed into place, the new manifest last. If this
    is interrupted by an exception, the old pair is put back (or the new pair completed); after a SIGKILL the next
    export of the same name finds the temporary folder and restores the manifest that matches the data.
    """
    aside = tmp / "old-manifest"
    moved = data_done = False
    try:
        if mpath.exists():
            os.replace(mpath, aside)
            moved = True
        os.replace(data, out)
        data_done = True
        os.replace(mtmp, mpath)
    except BaseException:
        with contextlib.suppress(OSError):
            if data_done:
                os.replace(mtmp, mpath)  # the new data is in place: complete the pair
            elif moved:
                os.replace(aside, mpath)  # the old data is still in place: put its manifest back
        raise


def _publish_folder(data: Path, out: Path, tmp: Path) -> None:
    """Swap the finished folder (data and manifest inside) into place; the old one is moved aside, then removed."""
    moved = False
    try:
        if out.exists():
            os.replace(out, tmp / "old")
            moved = True
        os.replace(data, out)
    except BaseException:
        if moved and not out.exists():
            with contextlib.suppress(OSError):
                os.replace(tmp / "old", out)
        raise


def _recover(out: Path, fmt: str) -> None:
    """After an export of `out` was killed mid-publish: restore what belongs together, drop its temporaries."""
    prefix = f".{out.name}{_TMP_TAG}"
    mpath = manifest_path_for(out, fmt)
    with contextlib.suppress(OSError):
        for d in sorted(out.parent.iterdir()):
            if not d.name.startswith(prefix) or not d.is_dir():
                continue
            pid = d.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and procs.alive(int(pid)):
                continue  # another export is at work
            if fmt == "datasets":
                if not out.exists() and (d / "old").is_dir():
                    os.replace(d / "old", out)
            elif out.is_file() and not mpath.exists():
                digest = _sha256(out)
                for cand in (d / "manifest", d / "old-manifest"):
                    m = _read_manifest(cand) if cand.is_file() else None
                    if m is not None and m.get("sha256") == digest:
                        os.replace(cand, mpath)
                        break
            shutil.rmtree(d, ignore_errors=True)


def _size_needed(ds: Any, idx: list[int]) -> int:
    try:
        return int(ds.data.nbytes * len(idx) / max(1, len(ds)) * 1.3)
    except Exception:  # noqa: BLE001
        return 0


# ---------------------------------------------------------------------------- for the app's Export page (pages/7)
_NAME_OK = re.compile(r"^[\w][\w .()-]*$")


def app_target(ws: Workspace, name: str, fmt: str) -> Path:
    """Where the app may write an export: a plain name inside the workspace's exports folder, nothing else.

    Raises:
        DataError: For a path (a folder separator, ``..``, an absolute path) or an odd name.
    """
    raw = (name or "").strip()
    if not raw:
        raise DataError("give a file name for the export (it is written to the workspace's exports folder)")
    if "/" in raw or "\\" in raw or raw in (".", "..") or raw.startswith(".") or Path(raw).is_absolute() \
            or not _NAME_OK.match(raw):
        raise DataError(f"{raw!r} is not a plain file name: the app writes only into {ws.path / 'exports'}; give "
                        "a name such as curated.csv (letters, digits, spaces, . _ - ( )), or use the CLI's "
                        "`python -m core export --out PATH` to write elsewhere")
    out = ws.path / "exports" / raw
    if fmt != "datasets" and out.suffix == "":
        out = out.with_suffix(_SUFFIX[fmt])
    return out


def preview_manifest(ws: Workspace, dataset_id: int, ds: Any, *, fmt: str, subset_run_id: int | None = None,
                     file_name: str | None = None) -> dict[str, Any]:
    """The manifest `export_dataset` would write now, without writing anything (no sha256: there is no file yet).

    Raises:
        DataError: Unknown format or an unusable subset run.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    from core.data import column

    uids = [str(u) for u in column(ds, "uid")]
    snap = snapshot(ws, dataset_id)
    keep, info = curated_uids(ws, dataset_id, uids, subset_run_id, snap)
    name = file_name or f"curated{_SUFFIX[fmt]}"
    return build_manifest(ws, dataset_id, uids, keep, info, fmt, name, snap)


def export_zip(ws: Workspace, dataset_id: int, ds: Any, *, fmt: str, subset_run_id: int | None = None,
               stem: str = "curated", neutralise_formulas: bool = False) -> bytes:
    """Export into a temporary folder and return a zip of the data (file or folder) and its manifest.

    Raises:
        DataError: As `export_dataset`.
    """
    import io
    import zipfile

    with tempfile.TemporaryDirectory(prefix="winnow-export-") as tmp:
        export_dataset(ws, dataset_id, ds, fmt=fmt, out=Path(tmp) / (stem + _SUFFIX[fmt]),
                       subset_run_id=subset_run_id, neutralise_formulas=neutralise_formulas)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(Path(tmp).rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(tmp).as_posix())
        return buf.getvalue()
