"""The values store: one column schema, a lossless round trip, partial checkpoints, clear errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import runs
from core.errors import Cancelled, DataError
from core.valuation import store
from core.valuation.base import COLUMNS, Values
from core.workspace import Workspace


def _values() -> Values:
    n = 5
    return Values(uids=np.array([f"u{i}" for i in range(n)]), values=np.linspace(-1, 1, n),
                  stderr=np.array([np.nan, 0.1, 0.2, 0.3, 0.4]), counts=np.arange(1, n + 1, dtype=np.int64),
                  method="knn_shapley", params={"k": 5}, seconds=1.5, extra={"rank_a": np.arange(n) / n})


def test_frame_round_trip_keeps_everything():
    v = _values()
    df = v.to_frame()
    assert tuple(df.columns[:4]) == COLUMNS and "rank_a" in df.columns
    back = Values.from_frame(df, method=v.method, params=v.params, seconds=v.seconds)
    np.testing.assert_array_equal(back.uids, v.uids)
    np.testing.assert_array_equal(back.values, v.values)
    np.testing.assert_array_equal(back.stderr, v.stderr)
    np.testing.assert_array_equal(back.counts, v.counts)
    np.testing.assert_array_equal(back.extra["rank_a"], v.extra["rank_a"])
    assert (back.method, back.params, back.seconds) == ("knn_shapley", {"k": 5}, 1.5)


def test_save_and_load_a_run(tmp_path):
    ws = Workspace(tmp_path / "ws")
    v = _values()
    with runs.recorded(ws, "values", dataset_id=None, method=v.method, params=v.params) as run:
        store.save_values(ws, run.id, v)
        run.done(store.summary(v), seconds=v.seconds)
    assert list(ws.load_run_frame(run.id).columns[:4]) == list(COLUMNS)
    back = store.load_values(ws, run.id)
    np.testing.assert_array_equal(back.counts, v.counts)
    assert back.method == "knn_shapley" and back.params == {"k": 5}
    assert ws.run(run.id).result["n_negative"] == 2
    assert store.latest_values(ws, None)[1].id == run.id


def test_a_values_file_needs_uid_and_value_and_unique_uids():
    with pytest.raises(DataError, match="values.csv needs columns uid and value"):
        Values.from_frame(pd.DataFrame({"id": ["a"], "value": [1.0]}), source="values.csv")
    with pytest.raises(DataError, match="repeats uids"):
        Values.from_frame(pd.DataFrame({"uid": ["a", "a"], "value": [1.0, 2.0]}))
    v = Values.from_frame(pd.DataFrame({"UID": ["a", "b"], "Value": [1.0, 2.0]}))
    assert (v.counts == 1).all() and np.isnan(v.stderr).all()


def test_partial_checkpoints_resume_and_drop(tmp_path):
    ws = Workspace(tmp_path / "ws")
    run_id = ws.create_run("values", dataset_id=None, method="ts_dshapley")
    assert store.load_partial(ws, run_id) == (None, 0.0)
    store.Checkpointer(ws, run_id)(_values(), 0.4)
    partial, done = store.load_partial(ws, run_id)
    assert done == 0.4 and partial.params == {"k": 5}
    np.testing.assert_array_equal(partial.counts, _values().counts)
    store.drop_partial(ws, run_id)
    assert store.load_partial(ws, run_id) == (None, 0.0)


@pytest.mark.parametrize("error, status", [(DataError("bad"), "failed"), (Cancelled(), "cancelled"),
                                           (KeyboardInterrupt(), "cancelled")])
def test_a_recorded_run_is_marked_failed_or_cancelled(tmp_path, error, status):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(type(error)):
        with runs.recorded(ws, "values", dataset_id=None, method="x") as run:
            raise error
    rec = ws.run(run.id)
    assert rec.status == status and rec.finished is not None and "error" in rec.result


def test_checkpoints_are_spaced_by_twenty_times_what_a_save_costs(tmp_path, monkeypatch):
    """A checkpoint of a million rows takes seconds to write: the Checkpointer waits 20 times a save's cost (or
    `every`, whichever is longer) before the next, and always saves the last."""
    clock = [100.0]
    saved = []

    def slow_save(ws, run_id, values, fraction):  # a save that takes 1 s on the fake clock
        saved.append(fraction)
        clock[0] += 1.0

    monkeypatch.setattr(store.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(store, "save_partial", slow_save)
    ck = store.Checkpointer(None, 1, every=2.0)  # type: ignore[arg-type]
    for i in range(60):  # a partial every 0.5 s
        ck(_values(), i / 60)
        clock[0] += 0.5
    ck(_values(), 1.0)
    assert saved[0] == 0.0 and saved[-1] == 1.0
    starts = np.diff([i for i in range(60) if i / 60 in saved])
    assert (starts * 0.5 >= 20.0).all()  # 20 x 1 s between saves, not every 2 s
