"""The workspace keeps every decision and result: migrations, concurrency, undo, artefacts."""
from __future__ import annotations

import multiprocessing as mp
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import WorkspaceError
from core.workspace import _MIGRATIONS, SCHEMA_VERSION, Workspace


def _dataset(ws: Workspace, fp: str = "fp1") -> int:
    return ws.register_dataset(name="toy", source="toy.csv", fingerprint=fp, n_rows=3, classes=["a", "b"],
                               text_col="text", label_col="label", meta={"k": 1})


def test_dataset_registration_is_idempotent_by_fingerprint(tmp_path):
    ws = Workspace(tmp_path)
    a = _dataset(ws)
    assert _dataset(ws) == a
    assert ws.dataset_by_fingerprint("fp1").id == a
    rec = ws.dataset(a)
    assert rec.classes == ["a", "b"] and rec.meta == {"k": 1} and rec.dir == tmp_path / "datasets" / str(a)
    assert _dataset(ws, "fp2") != a
    with pytest.raises(WorkspaceError, match="no dataset 99"):
        ws.dataset(99)


def test_env_var_sets_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("WINNOW_HOME", str(tmp_path / "home"))
    ws = Workspace()
    assert ws.path == tmp_path / "home" and (tmp_path / "home" / "winnow.db").exists()


def test_schema_migrates_from_version_1_keeping_data(tmp_path):
    con = sqlite3.connect(tmp_path / "winnow.db")
    con.executescript(_MIGRATIONS[0])
    con.execute("INSERT INTO datasets(name, source, fingerprint, n_rows, classes, meta, created)"
                " VALUES('old', 'old.csv', 'fp', 2, '[\"x\", \"y\"]', '{}', 0)")
    con.execute("INSERT INTO decisions(dataset_id, uid, action, reason, source, time) VALUES(1, 'u1', 'remove',"
                " 'spam', 'manual', 1.0)")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    ws = Workspace(tmp_path)
    assert ws.schema_version() == SCHEMA_VERSION
    d = ws.decisions(1)["u1"]
    assert (d.action, d.reason, d.note) == ("remove", "spam", "")
    assert ws.dataset(1).name == "old"


def test_newer_schema_is_refused(tmp_path):
    con = sqlite3.connect(tmp_path / "winnow.db")
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(WorkspaceError, match="newer Winnow"):
        Workspace(tmp_path)


def test_runs_results_merge_and_checkpoints(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    rid = ws.create_run("values", dataset_id=ds, method="knn_shapley", params={"k": 10})
    ws.save_checkpoint(rid, "pass0", {"sums": [1.0, 2.0]})
    ws.save_checkpoint(rid, "pass0", {"sums": [3.0]})  # overwritten, not duplicated
    assert ws.checkpoints(rid) == {"pass0": {"sums": [3.0]}}
    assert ws.find_resumable("values", dataset_id=ds, method="knn_shapley", params={"k": 10}).id == rid
    assert ws.find_resumable("values", dataset_id=ds, method="knn_shapley", params={"k": 5}) is None
    ws.update_run(rid, result={"auc": 0.9})
    ws.update_run(rid, status="done", result={"n": 3}, seconds=1.5)
    run = ws.run(rid)
    assert run.result == {"auc": 0.9, "n": 3} and run.status == "done" and run.finished is not None
    assert ws.latest_run("values", dataset_id=ds).id == rid
    assert ws.find_resumable("values", dataset_id=ds, method="knn_shapley", params={"k": 10}) is None


def test_artefacts_are_written_atomically_and_read_back(tmp_path):
    import pandas as pd

    ws = Workspace(tmp_path)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    ws.write_array("embeddings/x.npy", arr)
    np.testing.assert_array_equal(ws.read_array("embeddings/x.npy"), arr)
    assert not [p for p in (tmp_path / "embeddings").iterdir() if p.name.startswith(".")]  # no temp left
    rid = ws.create_run("selection", dataset_id=None, method="random")
    ws.save_run_frame(rid, pd.DataFrame({"uid": ["a", "b"], "cluster": [0, 1]}))
    assert ws.load_run_frame(rid)["uid"].tolist() == ["a", "b"]
    with pytest.raises(WorkspaceError, match="missing"):
        ws.read_array("nope.npy")


def test_decisions_undo_restores_the_previous_state(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    [e1] = ws.decide(ds, ["u1"], "remove", reason="mislabelled", source="lasso")
    [e2] = ws.decide(ds, ["u1"], "keep", reason="actually fine")
    assert ws.decisions(ds)["u1"].action == "keep"
    ws.undo(e2)
    assert ws.decisions(ds)["u1"].action == "remove" and ws.decisions(ds)["u1"].source == "lasso"
    ws.undo(e1)
    assert "u1" not in ws.decisions(ds)
    with pytest.raises(WorkspaceError, match="already undone"):
        ws.undo(e1)
    ws.decide(ds, ["a", "b", "c"], "remove", reason="batch")
    assert ws.decision_counts(ds)["remove"] == 3
    assert len(ws.undo_last(ds)) == 3 and ws.decisions(ds) == {}
    with pytest.raises(WorkspaceError, match="unknown decision"):
        ws.decide(ds, ["a"], "delete")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]),
                          st.sampled_from(["remove", "keep", "relabel", "clear", "undo"])), max_size=25))
def test_decision_state_equals_replaying_the_surviving_events(tmp_path_factory, ops):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    ds = _dataset(ws)
    live: list[tuple[int, str, str]] = []  # events not undone, in order
    for uid, action in ops:
        if action == "undo":
            if live:
                eid, _, _ = live.pop()  # undo the newest surviving event
                ws.undo(eid)
            continue
        [eid] = ws.decide(ds, [uid], action)
        live.append((eid, uid, action))
    expected: dict[str, str] = {}
    for _, uid, action in live:
        if action == "clear":
            expected.pop(uid, None)
        else:
            expected[uid] = action
    assert {u: d.action for u, d in ws.decisions(ds).items()} == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(["u1", "u2", "u3", "u4"]), min_size=1, max_size=5),
                          st.sampled_from(["remove", "keep", "relabel", "clear", "undo"])), max_size=20))
def test_batches_and_batch_undos_equal_replaying_the_surviving_events(tmp_path_factory, ops):
    """Batches (a uid may be listed twice in one) and undos of the newest batch, as the map and the sidebar do."""
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    ds = _dataset(ws)
    live: list[list[tuple[str, str]]] = []  # surviving batches, in order
    for uids, action in ops:
        if action == "undo":
            undone = ws.undo_last(ds)
            assert len(undone) == (len(live.pop()) if live else 0)
            continue
        ws.decide(ds, uids, action)
        live.append([(u, action) for u in uids])
    expected: dict[str, str] = {}
    for batch in live:
        for uid, action in batch:
            if action == "clear":
                expected.pop(uid, None)
            else:
                expected[uid] = action
    assert {u: d.action for u, d in ws.decisions(ds).items()} == expected


def _writer(path: str, who: int, n: int) -> None:
    ws = Workspace(path)
    for i in range(n):
        ws.decide(1, [f"p{who}-{i}"], "remove", reason=f"writer {who}")


def test_two_processes_deciding_at_once_lose_nothing(tmp_path):
    ws = Workspace(tmp_path)
    _dataset(ws)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 1000)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    state = ws.decisions(1)
    assert len(state) == 2000
    assert sum(1 for d in state.values() if d.reason == "writer 0") == 1000


def test_a_schema_8_workspace_keeps_its_decisions_in_force_and_undoes_them_after_the_keyed_state(tmp_path):
    con = sqlite3.connect(tmp_path / "winnow.db")
    for step in _MIGRATIONS[:8]:
        con.executescript(step)
    con.execute("PRAGMA user_version=8")
    con.execute("INSERT INTO datasets(name, source, fingerprint, n_rows, classes, meta, created)"
                " VALUES('old', 'old.csv', 'fp', 2, '[\"x\", \"y\"]', '{}', 0)")
    for i, (uid, action, note) in enumerate([("u1", "keep", ""), ("u1", "remove", ""), ("u2", "relabel", "y")], 1):
        con.execute("INSERT INTO decisions(id, dataset_id, uid, action, reason, note, source, time)"
                    " VALUES(?, 1, ?, ?, 'why', ?, 'manual', ?)", (i, uid, action, note, float(i)))
    con.execute("INSERT INTO decision_state SELECT dataset_id, uid, id, action, reason, note, source, time"
                " FROM decisions WHERE id IN (2, 3)")
    con.commit()
    con.close()
    ws = Workspace(tmp_path)
    assert ws.schema_version() == SCHEMA_VERSION
    assert {u: (d.action, d.note) for u, d in ws.decisions(1).items()} == {"u1": ("remove", ""), "u2": ("relabel", "y")}
    ws.undo(2)  # u1 goes back to its pin
    assert {u: d.action for u, d in ws.decisions(1).items()} == {"u1": "keep", "u2": "relabel"}
