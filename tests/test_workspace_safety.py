"""Read-only and full disks, and runs whose process vanished (issue 12 §4)."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest

from core import data
from core import workspace as workspace_mod
from core.__main__ import main
from core.errors import DataError
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def _csv(path: Path, n: int = 12) -> Path:
    pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": [f"text {i}" for i in range(n)],
                  "label": [("pos", "neg")[i % 2] for i in range(n)]}).to_csv(path, index=False)
    return path


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))}


def test_reading_commands_work_on_a_read_only_workspace(tmp_path, capsys, monkeypatch):
    src = _csv(tmp_path / "d.csv")
    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "decisions", "add", str(src), "remove", "r1", "--reason", "bad"]) == 0
    before = _state(ws)
    monkeypatch.setattr(workspace_mod, "_writable", lambda path, db: False)  # a read-only disk
    capsys.readouterr()
    assert main(["--workspace", str(ws), "info", str(src)]) == 0
    assert "rows: 12" in capsys.readouterr().out
    assert main(["--workspace", str(ws), "decisions", "list", str(src)]) == 0
    assert "1 removed" in capsys.readouterr().out
    out = tmp_path / "elsewhere" / "o.csv"
    assert main(["--workspace", str(ws), "export", str(src), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 11
    assert main(["--workspace", str(ws), "datasets"]) == 0
    capsys.readouterr()
    assert main(["--workspace", str(ws), "decisions", "add", str(src), "remove", "r2"]) == 2
    err = capsys.readouterr().err
    assert "read-only" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _state(ws) == before  # nothing in the workspace was written


def test_a_load_that_fills_the_disk_leaves_nothing_behind(tmp_path, monkeypatch):
    src = _csv(tmp_path / "d.csv", 40)
    ws = Workspace(tmp_path / "ws")
    real = datasets.Dataset.save_to_disk

    def full(self, path, *a, **kw):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "data-00000-of-00001.arrow").write_bytes(b"x" * 2000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", full)
    with pytest.raises(DataError, match=r"^disk full: \d+ MB needed to save d.csv"):
        data.open_dataset(ws, str(src))
    assert ws.datasets() == []  # the catalogue keeps no record of it
    leftovers = [p for p in (ws.path / "datasets").rglob("*") if p.is_file()] if (ws.path / "datasets").exists() else []
    assert leftovers == []
    monkeypatch.setattr(datasets.Dataset, "save_to_disk", real)
    loaded = data.open_dataset(ws, str(src))  # with space again, it just works, and the database is fine
    assert len(loaded.ds) == 40 and [d.id for d in ws.datasets()] == [loaded.dataset_id]


def test_a_killed_run_reads_dead_at_once_everywhere(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws")
    code = ("import sys, time; from core.workspace import Workspace\n"
            f"ws = Workspace({str(ws.path)!r}); rid = ws.create_run('values', dataset_id=None, method='loo')\n"
            "print(rid, flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    rid = int(p.stdout.readline())
    assert ws.run(rid).status == "running"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert ws.run(rid).status == "dead"
    assert [r.status for r in ws.runs("values")] == ["dead"]
    assert ws.runs("values", status="running") == []
    assert main(["--workspace", str(ws.path), "runs"]) == 0
    assert "dead" in capsys.readouterr().out
    live = ws.create_run("values", dataset_id=None, method="loo")  # this process is alive: still running
    assert ws.run(live).status == "running"


def test_a_full_database_disk_says_disk_full_and_keeps_the_database(tmp_path, monkeypatch):
    from core.errors import WorkspaceError

    ws = Workspace(tmp_path / "ws")
    ds_id = ws.register_dataset(name="t", source="t", fingerprint="fp", n_rows=1, classes=["a", "b"])
    real = Workspace._connect

    def full_disk(self):  # SQLite's own "database or disk is full", as on a full disk
        con = real(self)
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        con.execute(f"PRAGMA max_page_count={pages}")
        return con

    monkeypatch.setattr(Workspace, "_connect", full_disk)
    with pytest.raises(WorkspaceError, match=r"^disk full: .*nothing was written"):
        ws.decide(ds_id, [f"u{i}" * 50 for i in range(5000)], "remove", reason="x" * 100)
    monkeypatch.setattr(Workspace, "_connect", real)
    assert ws.decision_version(ds_id) == 0 and ws.dataset(ds_id).name == "t"  # intact, nothing half-written
    ws.decide(ds_id, ["u1"], "remove")
    assert ws.decision_version(ds_id) > 0
