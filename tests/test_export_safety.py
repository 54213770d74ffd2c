"""Writes only where they belong: no foreign file replaced, data and manifest always agree (issue 12 §4)."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import threading

import datasets
import pandas as pd
import pytest

from core import export as export_mod
from core.__main__ import main
from core.errors import DataError
from core.export import export_dataset
from core.workspace import Workspace


def _setup(tmp_path, n=20):
    ws = Workspace(tmp_path / "ws")
    texts = [f"text {i}" for i in range(n)]
    ds = datasets.Dataset.from_dict({"uid": [f"u{i}" for i in range(n)], "text": texts,
                                     "label": [("pos", "neg")[i % 2] for i in range(n)]})
    ds_id = ws.register_dataset(name="toy", source="toy.csv", fingerprint=f"fp-{n}", n_rows=n,
                                classes=["neg", "pos"], text_col="text", label_col="label")
    return ws, ds_id, ds


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def agree(out, fmt="csv"):
    """A manifest beside data describes exactly that data (or there is no manifest): never a mismatch."""
    mpath = export_mod.manifest_path_for(out, fmt)
    if not mpath.exists():
        return True
    m = json.loads(mpath.read_text())
    if fmt == "datasets":
        return all(_sha(out / name) == sha for name, sha in m["files"].items())
    if not out.exists():
        return False
    if m["sha256"] != _sha(out):
        return False
    back = pd.read_csv(out, dtype=str, keep_default_na=False)
    removed = {r["uid"] for r in m["removals"]}
    return not (set(back["uid"]) & removed) and len(back) == m["rows_after"]


def test_a_foreign_file_is_not_replaced_without_overwrite(tmp_path, capsys):
    ws, ds_id, ds = _setup(tmp_path)
    victim = tmp_path / "notes.csv"
    victim.write_text("mine, not winnow's\n")
    with pytest.raises(DataError, match="not an unchanged Winnow export; pass --overwrite"):
        export_dataset(ws, ds_id, ds, fmt="csv", out=victim)
    assert victim.read_text() == "mine, not winnow's\n"
    res = export_dataset(ws, ds_id, ds, fmt="csv", out=victim, overwrite=True)
    assert len(pd.read_csv(res.path)) == 20
    # an earlier, unchanged Winnow export is replaced without --overwrite; an edited one is not
    export_dataset(ws, ds_id, ds, fmt="csv", out=victim)
    with open(victim, "a") as f:
        f.write('"edited","by","hand"\n')
    with pytest.raises(DataError, match="--overwrite"):
        export_dataset(ws, ds_id, ds, fmt="csv", out=victim)


def test_a_datasets_export_never_empties_a_foreign_folder(tmp_path, capsys):
    ws, ds_id, ds = _setup(tmp_path)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8 precious")
    for overwrite in (False, True):
        with pytest.raises(DataError, match="never empties such a folder"):
            export_dataset(ws, ds_id, ds, fmt="datasets", out=folder, overwrite=overwrite)
    assert (folder / "holiday.jpg").read_bytes() == b"\xff\xd8 precious"
    # the CLI says the same in one line
    data = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "y", "x"]}).to_csv(data, index=False)
    assert main(["--workspace", str(tmp_path / "ws2"), "export", str(data), "--format", "datasets", "--out",
                 str(folder), "--overwrite"]) == 2
    assert "never empties" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
    # its own earlier export is replaced
    out = tmp_path / "ds"
    export_dataset(ws, ds_id, ds, fmt="datasets", out=out)
    ws.decide(ds_id, ["u0"], "remove")
    res = export_dataset(ws, ds_id, ds, fmt="datasets", out=out)
    assert len(datasets.load_from_disk(str(out))) == 19 and res.manifest["rows_after"] == 19 and agree(out, "datasets")


def test_out_csv_then_out_jsonl_keep_both_manifests(tmp_path):
    ws, ds_id, ds = _setup(tmp_path)
    a = export_dataset(ws, ds_id, ds, fmt="csv", out=tmp_path / "out.csv")
    b = export_dataset(ws, ds_id, ds, fmt="jsonl", out=tmp_path / "out.jsonl")
    assert a.manifest_path != b.manifest_path and a.manifest_path.exists() and b.manifest_path.exists()
    assert json.loads(a.manifest_path.read_text())["sha256"] == _sha(tmp_path / "out.csv")
    assert json.loads(b.manifest_path.read_text())["sha256"] == _sha(tmp_path / "out.jsonl")


@pytest.mark.parametrize("step", range(4))
def test_data_and_manifest_agree_when_the_export_dies_at_any_step(tmp_path, monkeypatch, step):
    """Kill the export (an exception nothing catches) at each file operation in turn: never a mismatch."""
    ws, ds_id, ds = _setup(tmp_path)
    out = tmp_path / "o.csv"
    export_dataset(ws, ds_id, ds, fmt="csv", out=out)  # a previous export
    ws.decide(ds_id, ["u1", "u2"], "remove", reason="bad")
    calls = {"n": 0}

    class Killed(BaseException):
        pass

    real_replace = os.replace

    def counting(*a, **kw):
        calls["n"] += 1
        if calls["n"] == step + 1:
            raise Killed()
        return real_replace(*a, **kw)

    monkeypatch.setattr(export_mod.os, "replace", counting)
    try:
        export_dataset(ws, ds_id, ds, fmt="csv", out=out)
    except Killed:
        pass
    monkeypatch.undo()
    assert agree(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.csv")]  # temporaries cleaned up
    res = export_dataset(ws, ds_id, ds, fmt="csv", out=out)  # and the next export just works
    assert agree(out) and res.rows_after == 18


@pytest.mark.slow
def test_sigkill_at_spread_moments_never_leaves_a_mismatch(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    ws, ds_id, ds = _setup(tmp_path, n=3000)
    ds.save_to_disk(str(tmp_path / "src"))
    out = tmp_path / "k.csv"
    export_dataset(ws, ds_id, ds, fmt="csv", out=out)
    ws.decide(ds_id, [f"u{i}" for i in range(0, 3000, 7)], "remove")
    code = (f"import datasets; from core.workspace import Workspace; from core.export import export_dataset\n"
            f"ds = datasets.load_from_disk({str(tmp_path / 'src')!r})\n"
            f"import sys; sys.stdout.write('go\\n'); sys.stdout.flush()\n"
            f"export_dataset(Workspace({str(ws.path)!r}), {ds_id}, ds, fmt='csv', out={str(out)!r})\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(export_mod.__file__)))
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
        p = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": root})
        p.stdout.readline()
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert agree(out), delay
    res = export_dataset(ws, ds_id, ds, fmt="csv", out=out)  # what a killed export left is recovered
    assert agree(out) and res.rows_after == 3000 - len(range(0, 3000, 7))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".k.csv")]


def test_one_snapshot_under_concurrent_decisions(tmp_path, monkeypatch):
    ws, ds_id, ds = _setup(tmp_path, n=200)
    real = export_mod._write_csv

    def slow_write(cols, path, neutralise):  # decisions land while the data is being written
        ws.decide(ds_id, [f"u{i}" for i in range(100, 150)], "remove", reason="late")
        return real(cols, path, neutralise)

    monkeypatch.setattr(export_mod, "_write_csv", slow_write)
    res = export_dataset(ws, ds_id, ds, fmt="csv", out=tmp_path / "c.csv")
    assert agree(res.path) and res.manifest["rows_after"] == 200 and res.manifest["removals"] == []

    stop = threading.Event()

    def decide_loop():
        i = 0
        while not stop.is_set() and i < 40:
            ws.decide(ds_id, [f"u{i}"], "remove", reason="thread")
            i += 1

    monkeypatch.setattr(export_mod, "_write_csv", real)
    t = threading.Thread(target=decide_loop)
    t.start()
    try:
        for k in range(5):
            r = export_dataset(ws, ds_id, ds, fmt="csv", out=tmp_path / f"t{k}.csv")
            assert agree(r.path)
    finally:
        stop.set()
        t.join()


def test_formula_neutralisation_is_opt_in_for_csv(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ds = datasets.Dataset.from_dict({"uid": ["a", "b", "c", "d"], "text": ["=1+1", "+SUM(A1)", "-2", "plain"],
                                     "label": ["@x", "y", "x", "y"]})
    ds_id = ws.register_dataset(name="f", source="f.csv", fingerprint="fp-f", n_rows=4, classes=["@x", "x", "y"])
    exact = export_dataset(ws, ds_id, ds, fmt="csv", out=tmp_path / "exact.csv")
    assert pd.read_csv(exact.path, dtype=str)["text"].tolist() == ["=1+1", "+SUM(A1)", "-2", "plain"]
    assert exact.manifest["formula_neutralisation"] is False
    safe = export_dataset(ws, ds_id, ds, fmt="csv", out=tmp_path / "safe.csv", neutralise_formulas=True)
    with open(safe.path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    assert [r[1] for r in rows] == ["'=1+1", "'+SUM(A1)", "'-2", "plain"] and rows[0][2] == "'@x"
    assert safe.manifest["formula_neutralisation"] is True and safe.manifest["formula_cells_neutralised"] == 4
    with pytest.raises(DataError, match="CSV only"):
        export_dataset(ws, ds_id, ds, fmt="jsonl", out=tmp_path / "x.jsonl", neutralise_formulas=True)


def test_exported_files_follow_the_umask(tmp_path):
    ws, ds_id, ds = _setup(tmp_path)
    old = os.umask(0o022)
    try:
        res = export_dataset(ws, ds_id, ds, fmt="csv", out=tmp_path / "m.csv")
        assert oct(res.path.stat().st_mode & 0o777) == oct(0o644)
        assert oct(res.manifest_path.stat().st_mode & 0o777) == oct(0o644)
        os.umask(0o027)
        res = export_dataset(ws, ds_id, ds, fmt="parquet", out=tmp_path / "m.parquet")
        assert oct(res.path.stat().st_mode & 0o777) == oct(0o640)
        res = export_dataset(ws, ds_id, ds, fmt="datasets", out=tmp_path / "mds")
        assert oct((res.path / "manifest.json").stat().st_mode & 0o777) == oct(0o640)
    finally:
        os.umask(old)


def test_disk_full_cleans_up_and_says_how_much_is_needed(tmp_path, monkeypatch):
    import errno

    ws, ds_id, ds = _setup(tmp_path)

    def full(cols, path, neutralise):
        path.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_mod, "_write_csv", full)
    with pytest.raises(DataError, match=r"^disk full: \d+ MB needed to write"):
        export_dataset(ws, ds_id, ds, fmt="csv", out=tmp_path / "full.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]
