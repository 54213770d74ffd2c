"""The single decision reader: the same state as replaying the log, cached by version, seen by every tab."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import decisions
from core.errors import WorkspaceError
from core.workspace import Workspace


def _dataset(ws: Workspace, fp: str = "fp1") -> int:
    return ws.register_dataset(name="toy", source="toy.csv", fingerprint=fp, n_rows=3, classes=["a", "b"],
                               text_col="text", label_col="label", meta={})


def test_state_has_sets_labels_counts_and_an_aligned_column(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    ws.decide(ds, ["u1", "u2"], "remove", reason="mislabelled", source="lasso")
    ws.decide(ds, ["u3"], "keep", reason="fine")
    ws.decide(ds, ["u4"], "relabel", reason="wrong label", note="b")
    s = decisions.current(ws, ds)
    assert s.removed == {"u1", "u2"} and s.pinned == {"u3"} and dict(s.relabels) == {"u4": "b"}
    assert dict(s.counts) == {"remove": 2, "keep": 1, "relabel": 1}
    assert list(s.column(["u4", "zz", "u1", "u3"])) == ["relabel", "", "remove", "keep"]
    assert s.get("u1").reason == "mislabelled" and s.get("u1").source == "lasso" and s.get("zz") is None
    assert s.as_dict() == ws.decisions(ds)
    assert s.version == max(e.id for e in ws.decision_log(ds))


def test_a_change_from_another_handle_is_seen_at_once_and_unchanged_state_is_reused(tmp_path):
    tab1, tab2 = Workspace(tmp_path), Workspace(tmp_path)  # two tabs, or the app and the CLI
    ds = _dataset(tab1)
    tab1.decide(ds, ["u1"], "remove")
    first = decisions.current(tab1, ds)
    assert decisions.current(tab2, ds) is first  # same version: the cached state, not a recomputation
    tab2.decide(ds, ["u2"], "remove")
    assert decisions.current(tab1, ds).removed == {"u1", "u2"}
    decisions.undo_last(tab1, ds)
    assert decisions.current(tab2, ds).removed == {"u1"}


def test_states_of_two_datasets_do_not_mix(tmp_path):
    ws = Workspace(tmp_path)
    a, b = _dataset(ws, "fa"), _dataset(ws, "fb")
    ws.decide(a, ["x"], "remove")
    ws.decide(b, ["y"], "keep")
    assert decisions.current(ws, a).removed == {"x"} and decisions.current(ws, b).pinned == {"y"}
    assert decisions.current(ws, a).pinned == frozenset()


def test_undo_last_undoes_a_whole_batch_in_one_transaction_and_records_it(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    ws.decide(ds, ["keep-me"], "remove", reason="earlier")
    ws.decide(ds, [f"u{i}" for i in range(2000)], "remove", reason="lasso", source="lasso")
    undone = decisions.undo_last(ws, ds)
    assert len(undone) == 2000
    assert decisions.current(ws, ds).removed == {"keep-me"}
    log = ws.decision_log(ds)
    assert sum(e.action == "undo" for e in log) == 2000  # the undo is itself in the audit trail
    assert decisions.undo_last(ws, ds) and decisions.current(ws, ds).removed == frozenset()
    assert decisions.undo_last(ws, ds) == []


def test_a_failing_batch_undo_writes_nothing(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    ids = ws.decide(ds, ["a", "b"], "remove")
    ws.undo(ids[1])
    before = len(ws.decision_log(ds))
    with pytest.raises(WorkspaceError, match="already undone"):
        ws.undo_many(ids)
    assert len(ws.decision_log(ds)) == before and decisions.current(ws, ds).removed == {"a"}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["u1", "u2", "u3"]),
                          st.sampled_from(["remove", "keep", "relabel", "clear", "undo", "undo-batch"])),
                max_size=25))
def test_cached_state_always_equals_replaying_the_log(tmp_path_factory, ops):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    ds = _dataset(ws)
    for uid, action in ops:
        if action == "undo-batch":
            decisions.undo_last(ws, ds)
        elif action == "undo":
            live = [e for e in ws.decision_log(ds) if e.action != "undo"
                    and not any(u.undoes == e.id for u in ws.decision_log(ds))]
            if live:
                ws.undo(live[-1].id)
        else:
            ws.decide(ds, [uid], action, note="b" if action == "relabel" else "")
        # the reference: replay every event in order, skipping undos and undone events
        log = ws.decision_log(ds)
        undone = {e.undoes for e in log if e.action == "undo"}
        expected: dict[str, str] = {}
        for e in log:
            if e.action == "undo" or e.id in undone:
                continue
            if e.action == "clear":
                expected.pop(e.uid, None)
            else:
                expected[e.uid] = e.action
        s = decisions.current(ws, ds)
        assert dict(zip(s.frame["uid"], s.frame["action"])) == expected
        assert list(s.column(["u1", "u2", "u3"])) == [expected.get(u, "") for u in ("u1", "u2", "u3")]
        assert s.relabels == {u: "b" for u, a in expected.items() if a == "relabel"}
        assert np.all(s.frame["event_id"].diff().dropna() > 0)


def test_a_big_change_read_whole_and_a_small_one_merged_give_the_state_of_a_fresh_read(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    uids = [f"u{i}" for i in range(3 * decisions.INCREMENTAL_MAX)]
    ws.decide(ds, uids[::2], "remove")
    ws.decide(ds, uids[1::3], "relabel", note="b")
    decisions.current(ws, ds)  # cached at this version
    for batch, action in ((uids[: 2 * decisions.INCREMENTAL_MAX], "keep"),  # past INCREMENTAL_MAX: read whole
                          (uids[5:9], "clear"), (uids[:3], "remove")):  # small: merged into the cached state
        ws.decide(ds, batch, action)
        got = decisions.current(ws, ds)
        decisions._cache.clear()
        fresh = decisions.current(ws, ds)
        assert got is not fresh and got.version == fresh.version
        assert (got.removed, got.pinned, dict(got.relabels), dict(got.counts)) == \
            (fresh.removed, fresh.pinned, dict(fresh.relabels), dict(fresh.counts))
        assert got.frame.equals(fresh.frame)  # same rows, same event order
    decisions.undo_last(ws, ds)
    assert decisions.current(ws, ds).pinned == set(uids[: 2 * decisions.INCREMENTAL_MAX]) - set(uids[5:9])


def test_uids_of_any_shape_are_recorded_as_given_in_order(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    odd = ["007", "7", "a\nb", 'q"uote', "back\\slash", "tab\tx", "😀 emoji", "é", " spaced ", "[1]", "null", "7"]
    ids = ws.decide(ds, odd, "remove", reason="r")
    log = ws.decision_log(ds)
    assert [e.uid for e in log] == odd and [e.id for e in log] == ids  # the repeated "7": two events, in order
    assert decisions.current(ws, ds).removed == set(odd)
    assert ws.decide(ds, [], "keep") == [] and len(ws.decision_log(ds)) == len(odd)


def test_a_recorded_batch_is_one_event_per_row_in_uid_order_and_its_merged_state_equals_a_fresh_read(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    uids = [f"u{i:04d}" for i in range(2 * decisions.INCREMENTAL_MAX + 7)]
    rng = np.random.default_rng(0)
    decisions.record(ws, ds, list(rng.permutation(uids)[:300]), "keep")
    decisions.current(ws, ds)  # cached at this version: the batches below are merged into it, not read
    for batch, action, note in ((list(rng.permutation(uids)), "remove", ""),  # every row, in a random order
                                (uids[3:40] + uids[3:10], "relabel", "b"),  # repeated uids: one event each
                                (uids[::5], "clear", ""), (uids[:1], "keep", "")):
        ids = decisions.record(ws, ds, batch, action, reason="r", note=note, source="lasso")
        events = ws.decision_log(ds)[-len(ids):]
        assert [e.uid for e in events] == sorted(set(batch)) and [e.id for e in events] == ids
        merged = decisions.current(ws, ds)
        decisions._cache.clear()
        fresh = decisions.current(ws, ds)
        assert merged is not fresh and merged.version == fresh.version
        assert (merged.removed, merged.pinned, dict(merged.relabels), dict(merged.counts)) == \
            (fresh.removed, fresh.pinned, dict(fresh.relabels), dict(fresh.counts))
        assert merged.frame.equals(fresh.frame)
    assert decisions.record(ws, ds, [], "remove") == []


def test_a_batch_written_by_another_process_between_reads_is_not_lost_by_the_merge(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    decisions.record(ws, ds, ["a", "b"], "remove")
    decisions.current(ws, ds)
    Workspace(tmp_path).decide(ds, ["c"], "keep")  # the CLI, say: the cached state no longer is the newest
    decisions.record(ws, ds, ["d"], "remove")
    state = decisions.current(ws, ds)
    assert state.removed == {"a", "b", "d"} and state.pinned == {"c"}


def test_undoing_a_big_batch_restores_every_rows_previous_decision(tmp_path):
    ws = Workspace(tmp_path)
    ds = _dataset(ws)
    uids = [f"u{i}" for i in range(3000)]
    decisions.record(ws, ds, uids[:1000], "keep")
    decisions.record(ws, ds, uids[500:1500], "relabel", note="b")
    [undone] = ws.undo_many(decisions.record(ws, ds, uids[1400:1401], "clear"))  # an undone event stays undone
    decisions.record(ws, ds, list(reversed(uids)), "remove")  # the big batch
    assert decisions.current(ws, ds).counts["remove"] == 3000
    decisions.undo_last(ws, ds)
    state = decisions.current(ws, ds)
    assert state.pinned == set(uids[:500]) and set(state.relabels) == set(uids[500:1500])
    assert state.removed == frozenset()
