"""The workspace: one folder with a SQLite catalogue (`winnow.db`) and array artefacts beside it.

Everything a user loads, computes or decides is recorded here so the CLI, the app and a restarted server all read
the same truth. SQLite runs in WAL mode with `busy_timeout`, every write is a short `BEGIN IMMEDIATE` transaction
on its own connection (safe across threads and processes), and decisions are an append-only event log so any
decision can be undone and audited. Array artefacts are written to a temp file and renamed into place.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import sqlite3
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np

from core.errors import WorkspaceError

SCHEMA_VERSION = 9

# Each entry upgrades the schema from version i to i + 1. Never edit a released step; append a new one.
_MIGRATIONS: list[str] = [
    # 0 -> 1: the first catalogue
    """
    CREATE TABLE datasets (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL, fingerprint TEXT NOT NULL UNIQUE,
        n_rows INTEGER NOT NULL, classes TEXT NOT NULL, text_col TEXT, label_col TEXT, meta TEXT NOT NULL,
        created REAL NOT NULL);
    CREATE TABLE embeddings (
        id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL REFERENCES datasets(id), model TEXT NOT NULL,
        dim INTEGER NOT NULL, n_rows INTEGER NOT NULL, relpath TEXT NOT NULL, seconds REAL, meta TEXT NOT NULL,
        created REAL NOT NULL, UNIQUE(dataset_id, model));
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY, kind TEXT NOT NULL, dataset_id INTEGER REFERENCES datasets(id),
        embedding_id INTEGER, method TEXT NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL,
        result TEXT NOT NULL, seconds REAL, created REAL NOT NULL, finished REAL, job_id TEXT);
    CREATE INDEX runs_kind ON runs(kind, dataset_id);
    CREATE TABLE checkpoints (
        run_id INTEGER NOT NULL REFERENCES runs(id), key TEXT NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL,
        PRIMARY KEY (run_id, key));
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY, dataset_id INTEGER NOT NULL, uid TEXT NOT NULL, action TEXT NOT NULL,
        reason TEXT NOT NULL, source TEXT NOT NULL, time REAL NOT NULL, undoes INTEGER);
    CREATE INDEX decisions_uid ON decisions(dataset_id, uid);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, argv TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL, message TEXT NOT NULL,
        pid INTEGER, started REAL, finished REAL, created REAL NOT NULL, log_path TEXT, run_id INTEGER,
        error TEXT);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 1 -> 2: notes on decisions (relabel suggestions, free text), run lineage, job labels
    """
    ALTER TABLE decisions ADD COLUMN note TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN parent_id INTEGER;
    ALTER TABLE jobs ADD COLUMN label TEXT NOT NULL DEFAULT '';
    ALTER TABLE jobs ADD COLUMN pid_start TEXT;
    """,
    # 2 -> 3: the decision in force on each row, kept by triggers in the same transaction as every event, so a
    # reader scans one small table instead of replaying the log; indexes for undo and for the version
    """
    CREATE INDEX decisions_undoes ON decisions(undoes);
    CREATE INDEX decisions_version ON decisions(dataset_id, id);
    CREATE TABLE decision_state (
        dataset_id INTEGER NOT NULL, uid TEXT NOT NULL, event_id INTEGER NOT NULL, action TEXT NOT NULL,
        reason TEXT NOT NULL, note TEXT NOT NULL, source TEXT NOT NULL, time REAL NOT NULL,
        PRIMARY KEY (dataset_id, uid));
    INSERT INTO decision_state SELECT d.dataset_id, d.uid, d.id, d.action, d.reason, d.note, d.source, d.time
        FROM decisions d JOIN (SELECT MAX(e.id) AS id FROM decisions e WHERE e.action!='undo'
        AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes=e.id) GROUP BY e.dataset_id, e.uid) m
        ON d.id=m.id WHERE d.action!='clear';
    CREATE TRIGGER decision_in_force AFTER INSERT ON decisions WHEN NEW.action NOT IN ('undo', 'clear') BEGIN
        INSERT OR REPLACE INTO decision_state VALUES (NEW.dataset_id, NEW.uid, NEW.id, NEW.action, NEW.reason,
            NEW.note, NEW.source, NEW.time);
    END;
    CREATE TRIGGER decision_cleared AFTER INSERT ON decisions WHEN NEW.action='clear' BEGIN
        DELETE FROM decision_state WHERE dataset_id=NEW.dataset_id AND uid=NEW.uid;
    END;
    CREATE TRIGGER decision_undone AFTER INSERT ON decisions WHEN NEW.action='undo' BEGIN
        DELETE FROM decision_state WHERE dataset_id=NEW.dataset_id AND uid=NEW.uid;
        INSERT INTO decision_state SELECT d.dataset_id, d.uid, d.id, d.action, d.reason, d.note, d.source, d.time
            FROM decisions d WHERE d.id=(SELECT MAX(e.id) FROM decisions e WHERE e.dataset_id=NEW.dataset_id
            AND e.uid=NEW.uid AND e.action!='undo' AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes=e.id))
            AND d.action!='clear';
    END;
    """,
    # 3 -> 4: the process behind a run, so a run whose process vanished reads as dead to anyone who reads it
    """
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN pid_start TEXT;
    """,
    # 4 -> 5: new events update the decision state in one set-based statement per batch instead of a trigger per
    # row (a 23,000-row lasso is written in two thirds of the time); undo keeps its trigger (one row's history)
    """
    DROP TRIGGER IF EXISTS decision_in_force;
    DROP TRIGGER IF EXISTS decision_cleared;
    """,
    # 5 -> 6: an undo batch restores the rows it touches in one set-based statement too (undoing a 23,000-row lasso
    # ran the undo trigger once per row)
    """
    DROP TRIGGER IF EXISTS decision_undone;
    """,
    # 6 -> 7: the state read on every page rerun comes from one covering index, already in event order (no row
    # lookups, no sort): a quarter of the time of reading the table
    """
    CREATE INDEX decision_state_order ON decision_state(dataset_id, event_id, uid, action, note);
    """,
    # 7 -> 8: a run's number within its dataset and kind is stored when the run is created (it was counted on
    # read, so deleting "subset 1" renamed "subset 2" to "subset 1")
    """
    ALTER TABLE runs ADD COLUMN number INTEGER;
    UPDATE runs SET number = (SELECT COUNT(*) FROM runs o WHERE o.kind=runs.kind AND o.dataset_id IS runs.dataset_id
                              AND o.id<=runs.id);
    """,
    # 8 -> 9: the decision state is one B-tree keyed by (dataset, uid) (WITHOUT ROWID) and no second index: a
    # 23,000-row lasso updated three B-trees per row before (the rowid table, the key, the event-order index), a
    # third of the time now; the whole-state read sorts by event id itself, as fast as the index was
    """
    CREATE TABLE decision_state_keyed (
        dataset_id INTEGER NOT NULL, uid TEXT NOT NULL, event_id INTEGER NOT NULL, action TEXT NOT NULL,
        reason TEXT NOT NULL, note TEXT NOT NULL, source TEXT NOT NULL, time REAL NOT NULL,
        PRIMARY KEY (dataset_id, uid)) WITHOUT ROWID;
    INSERT INTO decision_state_keyed SELECT dataset_id, uid, event_id, action, reason, note, source, time
        FROM decision_state;
    DROP TABLE decision_state;
    ALTER TABLE decision_state_keyed RENAME TO decision_state;
    """,
]
assert len(_MIGRATIONS) == SCHEMA_VERSION

_ACTION_COLUMNS = "uid, action, event_id, CASE WHEN action='relabel' THEN note END"  # see decision_actions
Action = Literal["remove", "keep", "clear", "relabel"]
ACTIONS = ("remove", "keep", "clear", "relabel")
SOURCES = ("manual", "lasso", "rule", "selection")
RUN_KINDS = ("values", "audit", "clusters", "selection", "finetune", "compare", "projection")
# The noun a person reads before a run's number (its number counts within its dataset and kind: "subset 1").
RUN_NOUNS = {"values": "valuation run", "audit": "self-check", "clusters": "clustering", "selection": "subset",
             "finetune": "fine-tune", "compare": "comparison", "projection": "map"}
# Each run's number within its dataset and kind, stored when it is created (the id is global: "subset 13" would be
# the thirteenth run of any kind on any dataset): one more than the highest number of its dataset and kind, so
# deleting a run renames none of the others.
_RUN_COLUMNS = "*"


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    source: str
    fingerprint: str
    n_rows: int
    classes: list[str]
    text_col: str | None
    label_col: str | None
    meta: dict[str, Any]
    created: float
    dir: Path


@dataclass(frozen=True)
class EmbeddingRecord:
    id: int
    dataset_id: int
    model: str
    dim: int
    n_rows: int
    relpath: str
    seconds: float | None
    meta: dict[str, Any]
    created: float


@dataclass(frozen=True)
class RunRecord:
    id: int
    kind: str
    dataset_id: int | None
    embedding_id: int | None
    method: str
    params: dict[str, Any]
    status: str
    result: dict[str, Any]
    seconds: float | None
    created: float
    finished: float | None
    job_id: str | None
    parent_id: int | None
    number: int = 0  # what a person sees: 1, 2, ... within this run's dataset and kind (the id stays global)

    @property
    def name(self) -> str:
        """How the app and the CLI name this run to a person: "subset 1", "valuation run 2" (see `RUN_NOUNS`)."""
        return f"{RUN_NOUNS.get(self.kind, self.kind + ' run')} {self.number}"


@dataclass(frozen=True)
class _DecisionFields:
    """What every decision event says about its row."""

    uid: str
    action: str
    reason: str
    note: str
    source: str
    time: float


@dataclass(frozen=True)
class Decision(_DecisionFields):
    """The current decision on one row: the newest event that is not undone."""

    event_id: int

    @classmethod
    def from_row(cls, r: Sequence[Any]) -> Decision:
        """From a `current_decision_rows` row: (uid, action, reason, note, source, time, event_id)."""
        return cls(uid=str(r[0]), action=str(r[1]), reason=str(r[2]), note=str(r[3]), source=str(r[4]),
                   time=float(r[5]), event_id=int(r[6]))


@dataclass(frozen=True)
class DecisionBatch:
    """What one `write_decisions` call wrote: the dataset's decision version just before it (read in the same
    transaction, so nothing else was written in between) and one event id per uid, in the order given."""

    version_before: int
    event_ids: list[int]


@dataclass(frozen=True)
class DecisionEvent(_DecisionFields):
    """One event of the decision log (an undo names the event it `undoes`)."""

    id: int
    dataset_id: int
    undoes: int | None


def atomic_write(dest: str | os.PathLike[str], write: Callable[[str], Any], *, suffix: str = "") -> Path:
    """Write `dest` through `write(tmp_path)` into a hidden temporary file beside it, then rename that into place,
    so readers never see half a file; the temporary file goes on any error. The one atomic writer of Winnow."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix or dest.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of a script, one at a time (a trigger's body keeps its inner semicolons)."""
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                yield buf
            buf = ""


def _apply_new_events(con: sqlite3.Connection, first: int) -> None:
    """Bring `decision_state` up to date with the (non-undo) events after id `first`, in the same transaction:
    each touched row takes its newest new event, and a "clear" removes its row."""
    newest = ("SELECT MAX(id) FROM decisions WHERE id>? AND action NOT IN ('undo') GROUP BY dataset_id, uid")
    con.execute("DELETE FROM decision_state WHERE (dataset_id, uid) IN (SELECT dataset_id, uid FROM decisions"
                f" WHERE id IN ({newest}) AND action='clear')", (int(first),))
    con.execute("INSERT OR REPLACE INTO decision_state SELECT dataset_id, uid, id, action, reason, note, source, time"
                f" FROM decisions WHERE id IN ({newest}) AND action!='clear'", (int(first),))


def _restore_undone(con: sqlite3.Connection, first: int) -> None:
    """Bring `decision_state` up to date after the undo events after id `first`, in the same transaction: each
    touched row takes its newest event that is neither an undo nor undone (none when that is a "clear")."""
    # (NOT INDEXED: the new events are read by their id range, not by a scan of the whole uid index)
    touched = "SELECT DISTINCT dataset_id, uid FROM decisions NOT INDEXED WHERE id>?"
    con.execute(f"DELETE FROM decision_state WHERE (dataset_id, uid) IN ({touched})", (int(first),))
    # per touched uid, its events newest first through the uid index, stopping at the first one in force (an undo
    # of the newest batch looks at three: the undo, the undone event, the one before)
    con.execute("INSERT INTO decision_state SELECT d.dataset_id, d.uid, d.id, d.action, d.reason, d.note, d.source,"
                f" d.time FROM ({touched}) t"
                " JOIN decisions d ON d.id=(SELECT e.id FROM decisions e WHERE e.dataset_id=t.dataset_id"
                " AND e.uid=t.uid AND e.action!='undo' AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes=e.id)"
                " ORDER BY e.id DESC LIMIT 1)"
                " WHERE d.action!='clear'", (int(first),))


def default_home() -> Path:
    return Path(os.environ.get("WINNOW_HOME") or "workspace")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, allow_nan=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _writable(path: Path, db_path: Path) -> bool:
    """Whether this process may write the workspace folder and its database (False on a read-only disk)."""
    return os.access(path, os.W_OK) and (not db_path.exists() or os.access(db_path, os.W_OK))


def _is_full(e: BaseException) -> bool:
    text = str(e).lower()
    return "disk is full" in text or "no space left" in text or getattr(e, "errno", None) in (errno.ENOSPC,
                                                                                              errno.EDQUOT)


def _process_id() -> tuple[int, str | None]:
    from core import procs

    return os.getpid(), procs.start_time(os.getpid())


class Workspace:
    """A folder holding `winnow.db` and artefacts. Cheap to create: it holds the path only.

    Args:
        path: The folder; None means `$WINNOW_HOME`, else `./workspace`. Created if missing.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_home()
        if not self.path.is_dir():
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WorkspaceError(f"cannot create the workspace folder {self.path}: {e.strerror}; "
                                     "set WINNOW_HOME to a writable folder") from e
        self.db_path = self.path / "winnow.db"
        # A read-only workspace (read-only disk, or files the user may not write) still serves every reading step
        self.read_only = not _writable(self.path, self.db_path)
        self._migrate()

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"

    # ------------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return self._connect_read_only()
        try:
            con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            con.execute("PRAGMA busy_timeout=5000")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            if _is_full(e):
                raise WorkspaceError(f"disk full: the workspace database {self.db_path} cannot be opened because "
                                     "its disk has no space left; free some space (the database itself is "
                                     "intact)") from e
            raise WorkspaceError(f"the workspace database {self.db_path} cannot be opened ({e}); "
                                 "move it aside or point WINNOW_HOME to another folder") from e
        con.row_factory = sqlite3.Row
        return con

    def _connect_read_only(self) -> sqlite3.Connection:
        if not self.db_path.exists():
            raise WorkspaceError(f"the workspace {self.path} is read-only and holds no database yet; point "
                                 "WINNOW_HOME (or --workspace) at a writable folder")
        uri = "file:" + urllib.parse.quote(str(self.db_path.resolve())) + "?mode=ro"
        try:
            con = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            con.execute("PRAGMA user_version").fetchone()
        except sqlite3.DatabaseError:
            # WAL readers need a -shm file they cannot create on a read-only disk: read the file as it stands
            try:
                con = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30, isolation_level=None)
                con.execute("PRAGMA user_version").fetchone()
            except sqlite3.DatabaseError as e:
                raise WorkspaceError(f"the workspace database {self.db_path} cannot be opened read-only ({e}); "
                                     "point WINNOW_HOME to a readable copy") from e
        con.execute("PRAGMA query_only=ON")
        con.row_factory = sqlite3.Row
        return con

    def _refuse_write(self) -> None:
        raise WorkspaceError(f"the workspace {self.path} is read-only, and this step needs to write to it; reading "
                             "steps (info, decisions list, export to a writable --out) still work; for this one, "
                             "point WINNOW_HOME (or --workspace) at a writable copy")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction taken with BEGIN IMMEDIATE (retried while another writer holds the lock)."""
        if self.read_only:
            self._refuse_write()
        con = self._connect()
        try:
            for attempt in range(200):
                try:
                    con.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) and "busy" not in str(e):
                        raise
                    time.sleep(min(0.05 * (attempt + 1), 0.5))
            else:
                raise WorkspaceError(f"the workspace database {self.db_path} stayed locked; is another "
                                     "process stuck writing to it?")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException as e:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                if isinstance(e, sqlite3.OperationalError) and _is_full(e):
                    raise WorkspaceError(f"disk full: the workspace {self.path} has no space left for this change "
                                         "(nothing was written); free some space and run the step again") from e
                raise
        finally:
            con.close()

    def _migrate(self) -> None:
        with self._read() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise WorkspaceError(f"the workspace {self.path} was written by a newer Winnow (schema {version}, "
                                 f"this one knows {SCHEMA_VERSION}); upgrade Winnow or use another WINNOW_HOME")
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise WorkspaceError(f"the workspace {self.path} is read-only and was written by an older Winnow "
                                 f"(schema {version}, this one needs {SCHEMA_VERSION}); open it once where it is "
                                 "writable, or point WINNOW_HOME to a writable copy")
        with self._write() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            for step in range(version, SCHEMA_VERSION):
                for stmt in _statements(_MIGRATIONS[step]):
                    con.execute(stmt)
                con.execute(f"PRAGMA user_version={step + 1}")

    def schema_version(self) -> int:
        with self._read() as con:
            return int(con.execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------ files
    def _abs(self, relpath: str | os.PathLike[str]) -> Path:
        p = self.path / relpath
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _atomic(self, relpath: str | os.PathLike[str], write: Any, suffix: str = "") -> Path:
        """Write through `write(tmp_path)` then rename onto relpath, so readers never see half a file."""
        return atomic_write(self._abs(relpath), write, suffix=suffix)

    def write_array(self, relpath: str, arr: np.ndarray) -> Path:
        def w(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(arr), allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        return self._atomic(relpath, w)

    def read_array(self, relpath: str, mmap: bool = False) -> np.ndarray:
        p = self.path / relpath
        if not p.exists():
            raise WorkspaceError(f"artefact {p} is missing from the workspace; recompute the step that made it")
        return np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)

    def write_json(self, relpath: str, obj: Any) -> Path:
        def w(tmp: str) -> None:
            Path(tmp).write_text(json.dumps(obj, default=_json_default, indent=2), encoding="utf-8")
        return self._atomic(relpath, w)

    def read_json(self, relpath: str) -> Any:
        p = self.path / relpath
        if not p.exists():
            raise WorkspaceError(f"artefact {p} is missing from the workspace")
        return json.loads(p.read_text(encoding="utf-8"))

    def write_frame(self, relpath: str, df: Any) -> Path:
        return self._atomic(relpath, lambda tmp: df.to_parquet(tmp, index=False))

    def read_frame(self, relpath: str) -> Any:
        import pandas as pd

        p = self.path / relpath
        if not p.exists():
            raise WorkspaceError(f"artefact {p} is missing from the workspace; recompute the step that made it")
        return pd.read_parquet(p)

    # ------------------------------------------------------------------ settings
    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._read() as con:
            row = con.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        with self._write() as con:
            con.execute("INSERT INTO settings(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, _dumps(value)))

    # ------------------------------------------------------------------ datasets
    def _dataset(self, row: sqlite3.Row) -> DatasetRecord:
        return DatasetRecord(id=row["id"], name=row["name"], source=row["source"], fingerprint=row["fingerprint"],
                             n_rows=row["n_rows"], classes=json.loads(row["classes"]), text_col=row["text_col"],
                             label_col=row["label_col"], meta=json.loads(row["meta"]), created=row["created"],
                             dir=self.path / "datasets" / str(row["id"]))

    def register_dataset(self, *, name: str, source: str, fingerprint: str, n_rows: int, classes: Sequence[str],
                         text_col: str | None = None, label_col: str | None = None,
                         meta: dict[str, Any] | None = None) -> int:
        """Record a loaded dataset; returns the existing id when the fingerprint is already known."""
        with self._write() as con:
            row = con.execute("SELECT id FROM datasets WHERE fingerprint=?", (fingerprint,)).fetchone()
            if row is not None:
                return int(row[0])
            cur = con.execute(
                "INSERT INTO datasets(name, source, fingerprint, n_rows, classes, text_col, label_col, meta, created)"
                " VALUES(?,?,?,?,?,?,?,?,?)",
                (name, source, fingerprint, int(n_rows), _dumps(list(classes)), text_col, label_col,
                 _dumps(meta or {}), time.time()))
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def forget_dataset(self, dataset_id: int) -> bool:
        """Drop a dataset's record if nothing refers to it yet (its save failed); True when dropped."""
        with self._write() as con:
            for table in ("decisions", "embeddings", "runs"):
                if con.execute(f"SELECT 1 FROM {table} WHERE dataset_id=? LIMIT 1", (int(dataset_id),)).fetchone():
                    return False
            con.execute("DELETE FROM datasets WHERE id=?", (int(dataset_id),))
        return True

    def dataset(self, dataset_id: int) -> DatasetRecord:
        with self._read() as con:
            row = con.execute("SELECT * FROM datasets WHERE id=?", (int(dataset_id),)).fetchone()
        if row is None:
            raise WorkspaceError(f"no dataset {dataset_id} in the workspace {self.path}; "
                                 "`python -m core datasets` lists them")
        return self._dataset(row)

    def dataset_by_fingerprint(self, fingerprint: str) -> DatasetRecord | None:
        with self._read() as con:
            row = con.execute("SELECT * FROM datasets WHERE fingerprint=?", (fingerprint,)).fetchone()
        return None if row is None else self._dataset(row)

    def datasets(self) -> list[DatasetRecord]:
        with self._read() as con:
            rows = con.execute("SELECT * FROM datasets ORDER BY id DESC").fetchall()
        return [self._dataset(r) for r in rows]

    # ------------------------------------------------------------------ embeddings
    def _embedding(self, row: sqlite3.Row) -> EmbeddingRecord:
        return EmbeddingRecord(id=row["id"], dataset_id=row["dataset_id"], model=row["model"], dim=row["dim"],
                               n_rows=row["n_rows"], relpath=row["relpath"], seconds=row["seconds"],
                               meta=json.loads(row["meta"]), created=row["created"])

    def register_embedding(self, *, dataset_id: int, model: str, dim: int, n_rows: int, relpath: str,
                           seconds: float | None = None, meta: dict[str, Any] | None = None) -> int:
        with self._write() as con:
            con.execute(
                "INSERT INTO embeddings(dataset_id, model, dim, n_rows, relpath, seconds, meta, created)"
                " VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(dataset_id, model) DO UPDATE SET dim=excluded.dim,"
                " n_rows=excluded.n_rows, relpath=excluded.relpath, seconds=excluded.seconds, meta=excluded.meta",
                (int(dataset_id), model, int(dim), int(n_rows), relpath, seconds, _dumps(meta or {}), time.time()))
            row = con.execute("SELECT id FROM embeddings WHERE dataset_id=? AND model=?",
                              (int(dataset_id), model)).fetchone()
            return int(row[0])

    def embedding(self, dataset_id: int, model: str) -> EmbeddingRecord | None:
        with self._read() as con:
            row = con.execute("SELECT * FROM embeddings WHERE dataset_id=? AND model=?",
                              (int(dataset_id), model)).fetchone()
        return None if row is None else self._embedding(row)

    def embedding_by_id(self, embedding_id: int) -> EmbeddingRecord:
        with self._read() as con:
            row = con.execute("SELECT * FROM embeddings WHERE id=?", (int(embedding_id),)).fetchone()
        if row is None:
            raise WorkspaceError(f"no embedding {embedding_id} in the workspace; run `python -m core embed DATA`")
        return self._embedding(row)

    def embeddings(self, dataset_id: int | None = None) -> list[EmbeddingRecord]:
        q, args = "SELECT * FROM embeddings", ()
        if dataset_id is not None:
            q, args = q + " WHERE dataset_id=?", (int(dataset_id),)
        with self._read() as con:
            rows = con.execute(q + " ORDER BY id DESC", args).fetchall()
        return [self._embedding(r) for r in rows]

    # ------------------------------------------------------------------ runs
    def _run(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(id=row["id"], kind=row["kind"], dataset_id=row["dataset_id"],
                         embedding_id=row["embedding_id"], method=row["method"], params=json.loads(row["params"]),
                         status=row["status"], result=json.loads(row["result"]), seconds=row["seconds"],
                         created=row["created"], finished=row["finished"], job_id=row["job_id"],
                         parent_id=row["parent_id"], number=int(row["number"]))

    def create_run(self, kind: str, *, dataset_id: int | None, method: str, params: dict[str, Any] | None = None,
                   embedding_id: int | None = None, job_id: str | None = None, status: str = "running",
                   parent_id: int | None = None) -> int:
        if kind not in RUN_KINDS:
            raise TypeError(f"unknown run kind {kind!r}; one of {RUN_KINDS}")
        pid, pid_start = _process_id()
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO runs(kind, dataset_id, embedding_id, method, params, status, result, created, job_id,"
                " parent_id, pid, pid_start, number) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,"
                " (SELECT COALESCE(MAX(number), 0) + 1 FROM runs WHERE kind=? AND dataset_id IS ?))",
                (kind, dataset_id, embedding_id, method, _dumps(params or {}), status, "{}", time.time(), job_id,
                 parent_id, pid, pid_start, kind, dataset_id))
            return int(cur.lastrowid)  # type: ignore[arg-type]

    def update_run(self, run_id: int, *, status: str | None = None, result: dict[str, Any] | None = None,
                   seconds: float | None = None, params: dict[str, Any] | None = None,
                   job_id: str | None = None) -> None:
        """Update a run; `result` is merged into the stored result. A final status stamps `finished`."""
        with self._write() as con:
            row = con.execute("SELECT result FROM runs WHERE id=?", (int(run_id),)).fetchone()
            if row is None:
                raise WorkspaceError(f"no run {run_id} in the workspace")
            sets: list[str] = []
            args: list[Any] = []
            if result is not None:
                merged = json.loads(row[0])
                merged.update(result)
                sets.append("result=?")
                args.append(_dumps(merged))
            if status is not None:
                sets.append("status=?")
                args.append(status)
                if status in ("done", "failed", "cancelled", "dead"):
                    sets.append("finished=?")
                    args.append(time.time())
            if seconds is not None:
                sets.append("seconds=?")
                args.append(float(seconds))
            if params is not None:
                sets.append("params=?")
                args.append(_dumps(params))
            if job_id is not None:
                sets.append("job_id=?")
                args.append(job_id)
            if sets:
                con.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id=?", (*args, int(run_id)))

    def _mark_dead_runs(self, con: sqlite3.Connection) -> list[sqlite3.Row] | None:
        """Runs still 'running' whose process is gone (kill -9, crash): rows to report as dead."""
        from core import procs

        rows = con.execute("SELECT id, pid, pid_start FROM runs WHERE status='running' AND pid IS NOT NULL").fetchall()
        return [r for r in rows if not procs.alive(r["pid"], r["pid_start"])]

    def _sweep_runs(self) -> set[int]:
        """Mark runs whose process vanished as dead, at once, for every reader; returns their ids."""
        with self._read() as con:
            dead = self._mark_dead_runs(con)
        if not dead:
            return set()
        ids = {int(r["id"]) for r in dead}
        if not self.read_only:
            with self._write() as con:
                for r in dead:
                    con.execute("UPDATE runs SET status='dead', finished=? WHERE id=? AND status='running'",
                                (time.time(), int(r["id"])))
        return ids

    def run(self, run_id: int) -> RunRecord:
        dead = self._sweep_runs()
        with self._read() as con:
            row = con.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id=?", (int(run_id),)).fetchone()
        if row is None:
            raise WorkspaceError(f"no run {run_id} in the workspace {self.path}; `python -m core runs` lists them")
        rec = self._run(row)
        return dataclasses.replace(rec, status="dead") if rec.id in dead else rec

    def runs(self, kind: str | None = None, *, dataset_id: int | None = None, method: str | None = None,
             status: str | None = None) -> list[RunRecord]:
        """Runs, newest first, filtered by whatever is given."""
        clauses, args = [], []
        for col, val in (("kind", kind), ("dataset_id", dataset_id), ("method", method), ("status", status)):
            if val is not None:
                clauses.append(f"{col}=?")
                args.append(val)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        dead = self._sweep_runs()
        with self._read() as con:
            rows = con.execute(f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY id DESC", args).fetchall()
        out = [self._run(r) for r in rows]
        if dead and self.read_only:  # nothing could be written: say it all the same
            out = [dataclasses.replace(r, status="dead") if r.id in dead else r for r in out]
            if status is not None:
                out = [r for r in out if r.status == status]
        return out

    def latest_run(self, kind: str, *, dataset_id: int | None = None, method: str | None = None,
                   status: str | None = "done") -> RunRecord | None:
        runs = self.runs(kind, dataset_id=dataset_id, method=method, status=status)
        return runs[0] if runs else None

    def find_resumable(self, kind: str, *, dataset_id: int | None, method: str,
                       params: dict[str, Any]) -> RunRecord | None:
        """The newest unfinished run with exactly these parameters (running, failed, dead or cancelled)."""
        want = json.loads(_dumps(params))
        for r in self.runs(kind, dataset_id=dataset_id, method=method):
            if r.status in ("running", "failed", "dead", "cancelled") and r.params == want:
                return r
        return None

    def delete_run(self, run_id: int) -> None:
        with self._write() as con:
            con.execute("DELETE FROM checkpoints WHERE run_id=?", (int(run_id),))
            con.execute("DELETE FROM runs WHERE id=?", (int(run_id),))
        with contextlib.suppress(OSError):
            (self.path / "artefacts" / "runs" / f"{int(run_id)}.parquet").unlink()

    def save_run_frame(self, run_id: int, df: Any) -> Path:
        return self.write_frame(f"artefacts/runs/{int(run_id)}.parquet", df)

    def load_run_frame(self, run_id: int) -> Any:
        return self.read_frame(f"artefacts/runs/{int(run_id)}.parquet")

    def save_checkpoint(self, run_id: int, key: str, obj: Any) -> None:
        with self._write() as con:
            con.execute("INSERT INTO checkpoints(run_id, key, payload, created) VALUES(?,?,?,?)"
                        " ON CONFLICT(run_id, key) DO UPDATE SET payload=excluded.payload, created=excluded.created",
                        (int(run_id), key, _dumps(obj), time.time()))

    def checkpoints(self, run_id: int) -> dict[str, Any]:
        with self._read() as con:
            rows = con.execute("SELECT key, payload FROM checkpoints WHERE run_id=? ORDER BY created",
                               (int(run_id),)).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    # ------------------------------------------------------------------ decisions
    def decide(self, dataset_id: int, uids: Sequence[str], action: str, *, reason: str = "", note: str = "",
               source: str = "manual") -> list[int]:
        """Append one decision event per uid (one transaction) and return the event ids.

        Args:
            action: "remove", "keep" (pin), "relabel" (a note with the suggested label) or "clear".
            source: "manual", "lasso", "rule" or "selection".
        """
        return self.write_decisions(dataset_id, uids, action, reason=reason, note=note, source=source).event_ids

    def write_decisions(self, dataset_id: int, uids: Sequence[str], action: str, *, reason: str = "",
                        note: str = "", source: str = "manual") -> DecisionBatch:
        """`decide`, also returning the decision version the batch was written on (see `core.decisions.record`,
        which writes a batch in uid order and brings its cached state up to date without reading it again)."""
        if action not in ACTIONS:
            raise WorkspaceError(f"unknown decision {action!r}; use one of {', '.join(ACTIONS)}")
        if source not in SOURCES:
            raise WorkspaceError(f"unknown decision source {source!r}; use one of {', '.join(SOURCES)}")
        now = time.time()
        listed = json.dumps([str(u) for u in uids], ensure_ascii=False)  # one parameter, not one binding per row
        with self._write() as con:
            first = con.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0]
            before = int(con.execute("SELECT COALESCE(MAX(id), 0) FROM decisions WHERE dataset_id=?",
                                     (int(dataset_id),)).fetchone()[0])
            con.execute("INSERT INTO decisions(dataset_id, uid, action, reason, note, source, time)"
                        " SELECT ?, value, ?, ?, ?, ?, ? FROM json_each(?) ORDER BY key",
                        (int(dataset_id), action, reason or "", note or "", source, now, listed))
            # one action for the whole batch: its rows are the newest events of their uids (a uid listed twice:
            # the later row replaces the earlier one), so no per-uid grouping is needed (see _apply_new_events)
            if action == "clear":
                con.execute("DELETE FROM decision_state WHERE dataset_id=? AND uid IN"
                            " (SELECT uid FROM decisions WHERE id>?)", (int(dataset_id), first))
            else:
                con.execute("INSERT OR REPLACE INTO decision_state SELECT dataset_id, uid, id, action, reason, note,"
                            " source, time FROM decisions WHERE id>? ORDER BY id", (first,))
            ids = [r[0] for r in con.execute("SELECT id FROM decisions WHERE id>? ORDER BY id", (first,))]
        return DecisionBatch(version_before=before, event_ids=ids)

    def undo(self, event_id: int) -> int:
        """Undo one decision event; the row returns to its previous state. Returns the undo event's id."""
        return self.undo_many([event_id])[0]

    def inherit_decisions(self, parent_id: int, child_id: int, present: Sequence[str]) -> tuple[int, int] | None:
        """Copy the decisions in force on `parent_id` to `child_id` for every uid in `present`, once.

        The events keep their action, reason, note, source and time. Done in one transaction with a marker, so a
        crash never copies twice or half; returns (carried over, decided uids gone), or None when already done.
        """
        marker = f"inherited:{int(child_id)}"
        keep = set(map(str, present))
        with self._write() as con:
            if con.execute("SELECT 1 FROM settings WHERE key=?", (marker,)).fetchone() is not None:
                return None
            rows = con.execute("SELECT uid, action, reason, note, source, time FROM decision_state"
                               " WHERE dataset_id=? ORDER BY event_id", (int(parent_id),)).fetchall()
            carry = [r for r in rows if r["uid"] in keep]
            first = con.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0]
            con.executemany("INSERT INTO decisions(dataset_id, uid, action, reason, note, source, time)"
                            " VALUES(?,?,?,?,?,?,?)",
                            [(int(child_id), r["uid"], r["action"], r["reason"], r["note"], r["source"], r["time"])
                             for r in carry])
            _apply_new_events(con, first)
            result = (len(carry), len(rows) - len(carry))
            con.execute("INSERT INTO settings(key, value) VALUES(?, ?)",
                        (marker, _dumps({"parent": int(parent_id), "carried": result[0], "gone": result[1]})))
        return result

    def undo_many(self, event_ids: Sequence[int]) -> list[int]:
        """Undo several decision events in one transaction (all or none). Returns the undo events' ids.

        Raises:
            WorkspaceError: If an event does not exist, is itself an undo, or is already undone.
        """
        ids = [int(i) for i in event_ids]
        if not ids:
            return []
        now = time.time()
        listed = json.dumps(ids)  # one parameter, not one binding per event
        with self._write() as con:
            cur = con.cursor()
            cur.row_factory = None
            n_found, n_undos, n_undone = cur.execute(
                "SELECT COUNT(*), TOTAL(d.action='undo'), TOTAL(EXISTS(SELECT 1 FROM decisions u WHERE u.undoes=d.id))"
                " FROM decisions d WHERE d.id IN (SELECT value FROM json_each(?))", (listed,)).fetchone()
            if n_found != len(ids) or n_undos or n_undone:  # name the first event that cannot be undone
                found = {r[0]: r for r in cur.execute(
                    "SELECT d.id, d.action, EXISTS(SELECT 1 FROM decisions u WHERE u.undoes=d.id) FROM decisions d"
                    " WHERE d.id IN (SELECT value FROM json_each(?))", (listed,))}
                for i in ids:
                    ev = found.get(i)
                    if ev is None:
                        raise WorkspaceError(f"no decision event {i}; `python -m core decisions log` lists them")
                    if ev[1] == "undo":
                        raise WorkspaceError(f"decision event {i} is itself an undo; undo the decision again instead")
                    if ev[2]:
                        raise WorkspaceError(f"decision event {i} is already undone")
                raise WorkspaceError("the same decision event was listed twice to undo")
            first = cur.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0]
            # in uid order: the uid index takes its new entries in order (a 23,000-row undo: about half the time)
            cur.execute("INSERT INTO decisions(dataset_id, uid, action, reason, note, source, time, undoes)"
                        " SELECT dataset_id, uid, 'undo', '', '', source, ?, id FROM decisions"
                        " WHERE id IN (SELECT value FROM json_each(?)) ORDER BY dataset_id, uid, id", (now, listed))
            _restore_undone(con, first)
            return [int(r[0]) for r in cur.execute("SELECT id FROM decisions WHERE id>? ORDER BY id", (first,))]

    def last_batch(self, dataset_id: int) -> list[int]:
        """Event ids of the newest batch of decisions still in force (the events written together at one time)."""
        with self._read() as con:
            row = con.execute(
                "SELECT time FROM decisions d WHERE dataset_id=? AND action!='undo' AND NOT EXISTS"
                " (SELECT 1 FROM decisions u WHERE u.undoes=d.id) ORDER BY id DESC LIMIT 1",
                (int(dataset_id),)).fetchone()
            if row is None:
                return []
            cur = con.cursor()
            cur.row_factory = None  # plain tuples: a lasso's batch is tens of thousands of events
            return [r[0] for r in cur.execute(
                "SELECT id FROM decisions d WHERE dataset_id=? AND time=? AND action!='undo' AND NOT EXISTS"
                " (SELECT 1 FROM decisions u WHERE u.undoes=d.id) ORDER BY id", (int(dataset_id), row[0]))]

    def undo_last(self, dataset_id: int) -> list[int]:
        """Undo the most recent batch of decisions (the events written together at one time), in one transaction."""
        return self.undo_many(self.last_batch(dataset_id))

    def decision_log(self, dataset_id: int, uid: str | None = None) -> list[DecisionEvent]:
        q, args = "SELECT * FROM decisions WHERE dataset_id=?", [int(dataset_id)]
        if uid is not None:
            q, args = q + " AND uid=?", [*args, uid]
        with self._read() as con:
            rows = con.execute(q + " ORDER BY id", args).fetchall()
        return [DecisionEvent(id=r["id"], dataset_id=r["dataset_id"], uid=r["uid"], action=r["action"],
                              reason=r["reason"], note=r["note"], source=r["source"], time=r["time"],
                              undoes=r["undoes"]) for r in rows]

    def decision_version(self, dataset_id: int) -> int:
        """The newest decision event id of a dataset (0 when none): changes with every decision and undo."""
        with self._read() as con:
            return int(con.execute("SELECT COALESCE(MAX(id), 0) FROM decisions WHERE dataset_id=?",
                                   (int(dataset_id),)).fetchone()[0])

    def current_decision_rows(self, dataset_id: int) -> tuple[int, list[tuple[Any, ...]]]:
        """The decision in force on each row, with the version it was read at.

        A row's decision is its newest event that is neither an undo nor undone; a "clear" there means none. The
        `decision_state` table holds exactly that, kept up to date in the transaction that writes each event.
        Returns `(version, rows)`, each row `(uid, action, reason, note, source, time, event_id)` in event order.
        """
        with self._read() as con:
            con.execute("BEGIN")  # one snapshot for the version and the rows
            version = int(con.execute("SELECT COALESCE(MAX(id), 0) FROM decisions WHERE dataset_id=?",
                                      (int(dataset_id),)).fetchone()[0])
            cur = con.cursor()
            cur.row_factory = None  # plain tuples: this read is on every page rerun
            rows = cur.execute(
                "SELECT uid, action, reason, note, source, time, event_id FROM decision_state WHERE dataset_id=?",
                (int(dataset_id),)).fetchall()
            con.execute("COMMIT")
        rows.sort(key=lambda r: r[6])
        return version, rows

    def decision_actions(self, dataset_id: int) -> tuple[int, list[tuple[str, str, int, str | None]]]:
        """The action in force on each decided row, read fast: `(version, rows)` in event order, one snapshot.

        Each row is `(uid, action, event_id, new label)`, the label only for "relabel" (else None); the rest of an
        event (reason, note, source, time) is `decision_details`. One scan of the state's key range, sorted.
        """
        with self._read() as con:
            con.execute("BEGIN")
            cur = con.cursor()
            cur.row_factory = None  # plain tuples: this read is on every page rerun
            version = int(cur.execute("SELECT COALESCE(MAX(id), 0) FROM decisions WHERE dataset_id=?",
                                      (int(dataset_id),)).fetchone()[0])
            rows = cur.execute(f"SELECT {_ACTION_COLUMNS} FROM decision_state WHERE dataset_id=? ORDER BY event_id",
                               (int(dataset_id),)).fetchall()
            con.execute("COMMIT")
        return version, rows

    def decision_details(self, dataset_id: int, event_ids: Sequence[int]) -> dict[int, tuple[str, str, str, float]]:
        """Event id -> (reason, note, source, time) of those decision events of a dataset. The log never changes an
        event: they are read from the decision state in one scan, and from the log for any no longer in force."""
        want = {int(i) for i in event_ids}
        with self._read() as con:
            cur = con.cursor()
            cur.row_factory = None
            rows = cur.execute("SELECT event_id, reason, note, source, time FROM decision_state WHERE dataset_id=?",
                               (int(dataset_id),)).fetchall() if len(want) > 50 else []
            out = {r[0]: r[1:] for r in rows if r[0] in want}
            missing = sorted(want - out.keys())
            for i in range(0, len(missing), 500):
                part = missing[i:i + 500]
                out.update((r[0], r[1:]) for r in cur.execute(
                    "SELECT id, reason, note, source, time FROM decisions WHERE id IN "
                    f"({','.join('?' * len(part))})", part))
        return out

    def decision_changes(self, dataset_id: int, since: int) -> tuple[int, list[str], list[tuple[Any, ...]]]:
        """What changed after event `since`: `(version, uids touched, their rows in force now)`, one snapshot.

        Rows have the shape of `decision_actions`; a touched uid without a row has no decision any more.
        """
        with self._read() as con:
            con.execute("BEGIN")
            cur = con.cursor()
            cur.row_factory = None
            version = int(cur.execute("SELECT COALESCE(MAX(id), 0) FROM decisions WHERE dataset_id=?",
                                      (int(dataset_id),)).fetchone()[0])
            touched = [r[0] for r in cur.execute("SELECT DISTINCT uid FROM decisions WHERE dataset_id=? AND id>?",
                                                 (int(dataset_id), int(since)))]
            rows: list[tuple[Any, ...]] = []
            for i in range(0, len(touched), 500):
                part = touched[i:i + 500]
                rows += cur.execute(f"SELECT {_ACTION_COLUMNS} FROM decision_state"
                                    f" WHERE dataset_id=? AND uid IN ({','.join('?' * len(part))})",
                                    (int(dataset_id), *part)).fetchall()
            con.execute("COMMIT")
        return version, touched, rows

    def decisions(self, dataset_id: int) -> dict[str, Decision]:
        """Current decision per row (uid -> Decision); "clear" and undone events leave none. `core.decisions`
        caches the same state by version, with sets and columns for the app."""
        _, rows = self.current_decision_rows(dataset_id)
        return {r[0]: Decision.from_row(r) for r in rows}

    def decision_counts(self, dataset_id: int) -> dict[str, int]:
        counts = {a: 0 for a in ("remove", "keep", "relabel")}
        for d in self.decisions(dataset_id).values():
            counts[d.action] = counts.get(d.action, 0) + 1
        return counts

    # ------------------------------------------------------------------ jobs (used by core.jobs)
    def _job_row(self, job_id: str) -> sqlite3.Row | None:
        with self._read() as con:
            return con.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()

    def _job_rows(self) -> list[sqlite3.Row]:
        with self._read() as con:
            return con.execute("SELECT * FROM jobs ORDER BY created DESC").fetchall()

    def _job_insert(self, job_id: str, argv: Sequence[str], label: str, log_path: str) -> None:
        with self._write() as con:
            con.execute("INSERT INTO jobs(id, argv, status, progress, message, created, log_path, label)"
                        " VALUES(?,?,?,?,?,?,?,?)",
                        (job_id, _dumps(list(argv)), "queued", 0.0, "queued", time.time(), log_path, label))

    def _job_update(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        cols = ", ".join(f"{k}=?" for k in fields)
        with self._write() as con:
            con.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))
