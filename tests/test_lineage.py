"""Curation survives a changed file: versions of a source inherit the decisions on rows they still hold (§2)."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from core import data, decisions
from core.__main__ import main
from core.errors import WinnowWarning
from core.workspace import Workspace

ROWS = [(f"tweet number {i}", ("pos", "neg", "neu")[i % 3]) for i in range(40)]


def write(path, rows, *, crlf=False):
    lines = ["text,label"] + [f"{t},{lab}" for t, lab in rows]
    path.write_bytes(("\r\n" if crlf else "\n").join(lines).encode() + (b"\r\n" if crlf else b"\n"))
    return path


def open_quiet(ws, path):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always", WinnowWarning)
        loaded = data.open_dataset(ws, str(path))
    return loaded, [str(w.message) for w in rec]


def curate(tmp_path):
    ws = Workspace(tmp_path / "ws")
    src = write(tmp_path / "d.csv", ROWS)
    first, _ = open_quiet(ws, src)
    uids = dict(zip(data.column(first.ds, "text"), data.column(first.ds, "uid")))
    ws.decide(first.dataset_id, [uids["tweet number 7"]], "remove", reason="spam")
    ws.decide(first.dataset_id, [uids["tweet number 8"]], "keep")
    ws.decide(first.dataset_id, [uids["tweet number 9"]], "relabel", note="pos")
    return ws, src, first, uids


@pytest.mark.parametrize("change, carried, gone, rows", [
    ("crlf", 3, 0, 40),
    ("reordered", 3, 0, 40),
    ("appended", 3, 0, 43),
    ("deleted_removed_row", 2, 1, 39),
])
def test_a_changed_file_is_a_new_version_that_keeps_the_decisions(tmp_path, change, carried, gone, rows):
    ws, src, first, uids = curate(tmp_path)
    new_rows = list(ROWS)
    if change == "reordered":
        new_rows = new_rows[::-1]
    elif change == "appended":
        new_rows += [(f"new tweet {i}", "pos") for i in range(3)]
    elif change == "deleted_removed_row":
        new_rows = [r for r in new_rows if r[0] != "tweet number 7"]
    write(src, new_rows, crlf=change == "crlf")
    second, msgs = open_quiet(ws, src)
    assert second.dataset_id != first.dataset_id and len(second.ds) == rows
    note = [m for m in msgs if "carried over" in m]
    assert len(note) == 1 and f"{carried} decision(s) carried over" in note[0] and f"{gone} decided row(s) are gone" in note[0]
    state = decisions.current(ws, second.dataset_id)
    want_removed = set() if change == "deleted_removed_row" else {uids["tweet number 7"]}
    assert state.removed == want_removed
    assert state.pinned == {uids["tweet number 8"]} and dict(state.relabels) == {uids["tweet number 9"]: "pos"}
    if want_removed:
        assert state.get(uids["tweet number 7"]).reason == "spam"
    assert [v.id for v in data.versions(ws, second.dataset_id)] == [first.dataset_id, second.dataset_id]
    assert second.record.meta["lineage"]["version"] == 2
    # reopening the same version does not copy twice
    again, _ = open_quiet(ws, src)
    assert again.dataset_id == second.dataset_id and decisions.current(ws, second.dataset_id).counts["remove"] == len(want_removed)


def test_the_cli_says_what_carried_over_and_shows_versions(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    src = write(tmp_path / "d.csv", ROWS)
    assert main(["--workspace", ws, "info", str(src)]) == 0
    uid = data.column(data.open_dataset(Workspace(ws), str(src)).ds, "uid")[7]
    assert main(["--workspace", ws, "decisions", "add", str(src), "remove", uid, "--reason", "spam"]) == 0
    write(src, ROWS, crlf=True)
    capsys.readouterr()
    assert main(["--workspace", ws, "decisions", "list", str(src)]) == 0
    out = capsys.readouterr()
    assert "1 removed" in out.out and "1 decision(s) carried over" in out.err and "version 2" in out.err
    assert main(["--workspace", ws, "export", str(src), "--out", str(tmp_path / "o.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 39
    capsys.readouterr()
    assert main(["--workspace", ws, "datasets"]) == 0
    out = capsys.readouterr().out
    assert "version" in out and "| 2 " in out


def test_decisions_import_reapplies_a_manifest_by_uid(tmp_path, capsys):
    ws, src, first, uids = curate(tmp_path)
    from core.export import export_dataset

    res = export_dataset(ws, first.dataset_id, first.ds, fmt="csv", out=tmp_path / "c.csv")
    other = write(tmp_path / "other.csv", ROWS[5:12] + [("something else", "pos"), ("more", "neg")])
    ws2 = str(tmp_path / "ws2")
    assert main(["--workspace", ws2, "decisions", "import", str(other), str(res.manifest_path)]) == 0
    out = capsys.readouterr().out
    assert "imported 3 decision(s)" in out and "1 removal" in out and "0 uid(s)" not in out
    loaded = data.open_dataset(Workspace(ws2), str(other))
    state = decisions.current(Workspace(ws2), loaded.dataset_id)
    assert state.removed == {uids["tweet number 7"]} and state.get(uids["tweet number 7"]).reason == "spam"
    assert dict(state.relabels) == {uids["tweet number 9"]: "pos"} and state.pinned == {uids["tweet number 8"]}
    assert main(["--workspace", ws2, "decisions", "import", str(other), str(res.manifest_path)]) == 0
    assert "imported 0 decision(s)" in capsys.readouterr().out  # already in force: nothing doubled
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"no": "manifest"}))
    assert main(["--workspace", ws2, "decisions", "import", str(other), str(bad)]) == 2
    assert "not a Winnow manifest" in capsys.readouterr().err
