"""Export the curated dataset (all rows minus removals, or a saved subset) with a manifest of what was removed and why.

Formats: csv, jsonl, parquet, or a `datasets` folder (save_to_disk). Texts round-trip exactly. For CSV, read it back
with `pandas.read_csv(path, dtype=str, keep_default_na=False)` so texts such as "NA" stay text.
"""
from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from core import __version__
from core.errors import DataError
from core.workspace import Workspace

Format = Literal["csv", "jsonl", "parquet", "datasets"]
FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet", "datasets")
_SUFFIX = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet", "datasets": ""}


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the data file or folder
    manifest_path: Path
    rows_before: int
    rows_after: int
    manifest: dict[str, Any]


def curated_uids(ws: Workspace, dataset_id: int, uids: list[str], subset_run_id: int | None = None) -> tuple[list[str], dict[str, Any]]:
    """The uids to export, in dataset order, and a description of how they were chosen."""
    decisions = ws.decisions(dataset_id)
    removed = {u for u, d in decisions.items() if d.action == "remove"}
    info: dict[str, Any] = {"what": "curated full set (all rows minus removals)"}
    if subset_run_id is not None:
        run = ws.run(subset_run_id)
        if run.kind != "selection":
            raise DataError(f"run {subset_run_id} is a {run.kind} run, not a saved subset; "
                            "`python -m core runs --kind selection` lists subsets")
        if run.dataset_id != dataset_id:
            raise DataError(f"subset {subset_run_id} belongs to dataset {run.dataset_id}, not {dataset_id}")
        chosen = set(ws.load_run_frame(subset_run_id)["uid"].astype(str))
        info = {"what": f"saved subset {subset_run_id} minus removals", "subset_run": subset_run_id,
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
                   fmt: str, file_name: str) -> dict[str, Any]:
    rec = ws.dataset(dataset_id)
    decisions = ws.decisions(dataset_id)
    keep_set = set(keep)
    n_removed = len({u for u, d in decisions.items() if d.action == "remove"} & set(uids))
    removals = [{"uid": d.uid, "reason": d.reason, "note": d.note, "source": d.source,
                 "time": _iso(d.time)} for d in decisions.values() if d.action == "remove"]
    notes = [{"uid": d.uid, "action": d.action, "reason": d.reason, "note": d.note, "source": d.source,
              "time": _iso(d.time), "exported": d.uid in keep_set}
             for d in decisions.values() if d.action in ("keep", "relabel")]
    return {
        "winnow_version": __version__,
        "created": _iso(None),
        "dataset": {"id": rec.id, "name": rec.name, "source": rec.source, "fingerprint": rec.fingerprint,
                    "classes": rec.classes, "text_column": rec.text_col, "label_column": rec.label_col},
        "rows_before": len(uids),
        "rows_after": len(keep),
        "rows_removed_by_decision": n_removed,
        "rows_left_out_by_subset": len(uids) - len(keep) - n_removed,
        "selection": subset_info,
        "valuation": _values_runs(ws, dataset_id, subset_info),
        "removals": removals,
        "other_decisions": notes,
        "format": fmt,
        "file": file_name,
        "read_back": _READ_BACK[fmt],
    }


_READ_BACK = {
    "csv": "pandas.read_csv(file, dtype=str, keep_default_na=False)",
    "jsonl": "pandas.read_json(file, lines=True, dtype=False) or datasets.load_dataset('json', data_files=file)",
    "parquet": "pandas.read_parquet(file) or datasets.load_dataset('parquet', data_files=file)",
    "datasets": "datasets.load_from_disk(folder)",
}


def _iso(ts: float | None) -> str:
    t = _dt.datetime.now(_dt.timezone.utc) if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    return t.isoformat(timespec="seconds")


def export_dataset(ws: Workspace, dataset_id: int, ds: Any, *, fmt: str, out: str | os.PathLike[str],
                   subset_run_id: int | None = None) -> ExportResult:
    """Write the curated rows of `ds` to `out` and `manifest.json` beside it.

    Args:
        ds: The loaded `datasets.Dataset` (uid, text, label, metadata columns).
        fmt: csv, jsonl, parquet or datasets.
        out: The file (or folder for `datasets`). For a file, the manifest goes to `<out stem>.manifest.json`;
            for a folder, to `<out>/manifest.json`.
        subset_run_id: Export this saved subset (minus removals) instead of the curated full set.

    Raises:
        DataError: Unknown format, nothing left to export, or an unusable output path.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if fmt != "datasets" and out.suffix == "":
        out = out.with_suffix(_SUFFIX[fmt])
    if out.exists() and out.is_dir() and fmt != "datasets":
        raise DataError(f"{out} is a folder; give a file name such as {out / ('curated' + _SUFFIX[fmt])}")
    from core.data import column

    uids = [str(u) for u in column(ds, "uid")]
    keep, info = curated_uids(ws, dataset_id, uids, subset_run_id)
    if not keep:
        raise DataError("nothing left to export: every row is removed or outside the subset; "
                        "undo some removals (`python -m core decisions undo`) or pick another subset")
    keep_set = set(keep)
    idx = [i for i, u in enumerate(uids) if u in keep_set]
    sub = ds.select(idx)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "datasets":
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            sub.save_to_disk(str(tmp / "data"))
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp / "data", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        manifest_path = out / "manifest.json"
    else:
        df = sub.to_pandas()
        fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=out.suffix)
        os.close(fd)
        try:
            if fmt == "csv":
                df.to_csv(tmp_name, index=False, encoding="utf-8", quoting=csv.QUOTE_ALL)
            elif fmt == "jsonl":
                with open(tmp_name, "w", encoding="utf-8") as f:
                    for rec in df.to_dict(orient="records"):
                        f.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            else:
                df.to_parquet(tmp_name, index=False)
            os.replace(tmp_name, out)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        manifest_path = out.with_name(out.stem + ".manifest.json")
    manifest = build_manifest(ws, dataset_id, uids, keep, info, fmt, out.name)
    if fmt != "datasets":
        manifest["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return ExportResult(path=out, manifest_path=manifest_path, rows_before=len(uids), rows_after=len(keep),
                        manifest=manifest)


# ---------------------------------------------------------------------------- for the app's Export page (pages/7)
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
    keep, info = curated_uids(ws, dataset_id, uids, subset_run_id)
    name = file_name or f"curated{_SUFFIX[fmt]}"
    return build_manifest(ws, dataset_id, uids, keep, info, fmt, name)


def export_zip(ws: Workspace, dataset_id: int, ds: Any, *, fmt: str, subset_run_id: int | None = None,
               stem: str = "curated") -> bytes:
    """Export into a temporary folder and return a zip of the data (file or folder) and its manifest.

    Raises:
        DataError: As `export_dataset`.
    """
    import io
    import zipfile

    with tempfile.TemporaryDirectory(prefix="winnow-export-") as tmp:
        res = export_dataset(ws, dataset_id, ds, fmt=fmt, out=Path(tmp) / (stem + _SUFFIX[fmt]),
                             subset_run_id=subset_run_id)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(Path(tmp).rglob("*")):
                if p.is_file():
                    zf.write(p, p.relative_to(tmp).as_posix())
        return buf.getvalue()
