"""Run and subset numbers count within a dataset and kind (issue 17: "subset 1", not "subset 13"), in the workspace
and in what the CLI prints; the database id stays global and is what commands take."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from core.__main__ import main
from core.workspace import Workspace


def _csv(path: Path, tag: str) -> Path:
    pd.DataFrame({"text": [f"{tag} text {i}" for i in range(12)],
                  "label": [("pos", "neg")[i % 2] for i in range(12)]}).to_csv(path, index=False)
    return path


def test_numbers_count_within_dataset_and_kind(ws, tmp_path):
    from core import data

    ids = [data.open_dataset(ws, str(_csv(tmp_path / f"{t}.csv", t))).dataset_id for t in "ab"]
    made = []  # interleave two datasets and two kinds, as a real session does
    for ds, kind in [(0, "values"), (1, "values"), (0, "selection"), (0, "values"), (1, "selection"),
                     (1, "selection"), (0, "selection"), (1, "values")]:
        made.append((ds, kind, ws.create_run(kind, dataset_id=ids[ds], method="m")))
    got = {run_id: (ws.run(run_id).number, ws.run(run_id).name) for _, _, run_id in made}
    assert [got[r][0] for _, _, r in made] == [1, 1, 1, 2, 1, 2, 2, 2]
    assert got[made[6][2]][1] == "subset 2" and got[made[3][2]][1] == "valuation run 2"
    # the list readers agree with the one-run reader, whatever the filter (a status filter does not renumber)
    ws.update_run(made[5][2], status="done")
    assert [(r.id, r.number) for r in ws.runs("selection", dataset_id=ids[1], status="done")] == [(made[5][2], 2)]
    assert {r.id: r.number for r in ws.runs()} == {r: n for r, (n, _) in got.items()}


def test_the_cli_names_subsets_by_their_number_in_the_dataset(tmp_path, capsys):
    wsp = tmp_path / "ws"
    a, b = _csv(tmp_path / "a.csv", "a"), _csv(tmp_path / "b.csv", "b")
    printed = []
    for data in (a, a, b):
        assert main(["--workspace", str(wsp), "select", str(data), "--strategy", "random", "--budget", "4",
                     "--out", str(tmp_path / "sel.csv")]) == 0
        printed.append(capsys.readouterr().out)
    assert re.search(r"saved as subset 1 \(run id 1\)", printed[0])
    assert re.search(r"saved as subset 2 \(run id 2\)", printed[1])
    assert re.search(r"saved as subset 1 \(run id 3\)", printed[2])  # the first subset of dataset b
    assert main(["--workspace", str(wsp), "runs"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"\| 3 +\| subset 1 +\|", table) and re.search(r"\| 2 +\| subset 2 +\|", table)
    # the id a command takes still names the same subset
    assert main(["--workspace", str(wsp), "export", str(b), "--subset", "3", "--out", str(tmp_path / "o.csv")]) == 0
    assert "saved subset 1 minus removals" in (tmp_path / "o.csv.manifest.json").read_text()
    assert Workspace(wsp).run(3).name == "subset 1"


def test_jobs_list_names_the_run_a_job_recorded(tmp_path, capsys):
    from core import jobs

    wsp = tmp_path / "ws"
    for data in (_csv(tmp_path / "a.csv", "a"), _csv(tmp_path / "b.csv", "b")):
        assert main(["--workspace", str(wsp), "select", str(data), "--strategy", "random", "--budget", "4",
                     "--out", str(tmp_path / "sel.csv")]) == 0
    ws = Workspace(wsp)
    ws._job_insert("j1", ["select", "b.csv"], "select", "/dev/null")
    jobs.attach_run(ws, "j1", 2)
    capsys.readouterr()
    assert main(["--workspace", str(wsp), "jobs", "list"]) == 0
    assert "subset 1 (run id 2)" in capsys.readouterr().out


def test_deleting_a_run_renames_none_of_the_others(ws, tmp_path):
    """A person who wrote down "subset 2" finds subset 2 again after deleting subset 1."""
    from core import data

    ds = data.open_dataset(ws, str(_csv(tmp_path / "a.csv", "a"))).dataset_id
    one, two, three = (ws.create_run("selection", dataset_id=ds, method="m") for _ in range(3))
    ws.delete_run(one)
    assert (ws.run(two).name, ws.run(three).name) == ("subset 2", "subset 3")
    assert {r.id: r.number for r in ws.runs("selection", dataset_id=ds)} == {two: 2, three: 3}
    assert ws.run(ws.create_run("selection", dataset_id=ds, method="m")).name == "subset 4"


def test_a_workspace_from_before_stored_numbers_gets_the_numbers_it_showed(tmp_path):
    import sqlite3

    from core.workspace import _MIGRATIONS

    con = sqlite3.connect(tmp_path / "winnow.db")
    for step in _MIGRATIONS[:7]:  # a schema-7 workspace: numbers were counted on read
        con.executescript(step)
    con.execute("PRAGMA user_version=7")
    for name in ("a", "b"):
        con.execute("INSERT INTO datasets(name, source, fingerprint, n_rows, classes, meta, created)"
                    " VALUES(?, 'x.csv', ?, 2, '[\"x\", \"y\"]', '{}', 0)", (name, name))
    for kind, ds in [("values", 1), ("selection", 1), ("values", 2), ("values", 1), ("selection", 1)]:
        con.execute("INSERT INTO runs(kind, dataset_id, method, params, status, result, created)"
                    " VALUES(?, ?, 'm', '{}', 'done', '{}', 0)", (kind, ds))
    con.commit()
    con.close()
    ws = Workspace(tmp_path)
    assert [(r.id, r.name) for r in sorted(ws.runs(), key=lambda r: r.id)] == [
        (1, "valuation run 1"), (2, "subset 1"), (3, "valuation run 1"), (4, "valuation run 2"), (5, "subset 2")]
    assert ws.run(ws.create_run("values", dataset_id=1, method="m")).name == "valuation run 3"
