"""The CLI as a user types it: one readable error line and exit 2; decisions; export; jobs listing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def _csv(path: Path, n: int = 12) -> Path:
    pd.DataFrame({"id": [f"r{i}" for i in range(n)], "sentence": [f"text number {i} 😀" for i in range(n)],
                  "label": [("pos", "neg", "neu")[i % 3] for i in range(n)], "source": "test"}).to_csv(path, index=False)
    return path


def run(ws, *argv):
    return main(["--workspace", str(ws), *map(str, argv)])


def test_info_prints_rows_and_classes(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv")
    assert run(tmp_path / "ws", "info", data) == 0
    out = capsys.readouterr().out
    assert "rows: 12" in out and "classes: 3" in out and "metadata columns: id, source" in out


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert run(tmp_path / "ws", "info", tmp_path / "missing.csv") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("winnow: error: file not found") and "missing.csv" in err[0]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert run(tmp_path / "ws", "info", tmp_path / "bad.csv") == 2
    assert "--text-col" in capsys.readouterr().err


def test_a_traceback_only_with_debug(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "core", "--workspace", str(tmp_path), "info", "nope.csv"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "core", "--workspace", str(tmp_path), "--debug", "info", "nope.csv"],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" in p.stderr


def test_decisions_add_list_undo_and_export(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv")
    ws = tmp_path / "ws"
    assert run(ws, "decisions", "add", data, "remove", "r1", "r2", "--reason", "mislabelled") == 0
    assert run(ws, "decisions", "add", data, "keep", "r3") == 0
    assert run(ws, "decisions", "undo", data) == 0  # undoes the keep
    capsys.readouterr()
    assert run(ws, "decisions", "list", data) == 0
    out = capsys.readouterr().out
    assert "2 removed, 0 kept" in out
    assert run(ws, "decisions", "add", data, "remove", "nope") == 2
    assert "not in dataset" in capsys.readouterr().err
    assert run(ws, "export", data, "--format", "jsonl", "--out", tmp_path / "out.jsonl") == 0
    back = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype=False)
    assert len(back) == 10 and "r1" not in set(back["uid"])
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert {r["uid"] for r in manifest["removals"]} == {"r1", "r2"}
    assert manifest["removals"][0]["reason"] == "mislabelled"


def test_export_a_subset_file(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv")
    pd.DataFrame({"uid": ["r0", "r4", "r5"]}).to_csv(tmp_path / "subset.csv", index=False)
    assert run(tmp_path / "ws", "export", data, "--format", "csv", "--out", tmp_path / "s.csv",
               "--subset", tmp_path / "subset.csv") == 0
    assert pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)["uid"].tolist() == ["r0", "r4", "r5"]
    pd.DataFrame({"uid": ["zz"]}).to_csv(tmp_path / "other.csv", index=False)
    assert run(tmp_path / "ws", "export", data, "--out", tmp_path / "t.csv", "--subset", tmp_path / "other.csv") == 2
    assert "not in" in capsys.readouterr().err


def test_every_step_has_help():
    from core.__main__ import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in ("info", "embed", "export", "decisions", "jobs", "datasets"):
        assert name in sub.choices
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0


def test_info_counts_texts_longer_than_the_model_window(tmp_path, capsys):
    long = " ".join(f"word{i}" for i in range(400))  # ~1,200 tokens, far over MiniLM's 256
    pd.DataFrame({"text": [long, "short one", long + " again", "tiny"], "label": ["a", "b", "a", "b"]}).to_csv(
        tmp_path / "long.csv", index=False)
    assert run(tmp_path / "ws", "info", tmp_path / "long.csv") == 0
    assert "texts longer than the model's 256-token window (cut when embedded): 2" in capsys.readouterr().out
    assert run(tmp_path / "ws", "info", tmp_path / "long.csv", "--json") == 0
    assert json.loads(capsys.readouterr().out)["truncated"] == {"rows": 2, "window": 256}
