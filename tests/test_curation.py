"""core.curation: map selection payloads -> rows, predictions, neighbours, aligned frames, agreement."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import curation

from recorded_selection import LASSO_EVENT


def test_selection_rows_reads_customdata():
    assert curation.selection_rows(LASSO_EVENT, 200).tolist() == [100, 101, 102]
    assert curation.selection_rows(LASSO_EVENT, 101).tolist() == [100]  # out of range dropped


@pytest.mark.parametrize("event", [None, {}, {"selection": {}}, {"selection": {"points": []}},
                                   {"selection": {"points": None, "box": [], "lasso": []}}])
def test_empty_selections(event):
    assert curation.selection_rows(event, 10).size == 0


def test_selection_rows_odd_payloads():
    pts = [{"customdata": [5]}, {"customdata": 6.0}, {"customdata": "7"}, {"customdata": 1.5},
           {"customdata": None, "point_index": 2}, {"customdata": 99}, {"customdata": -1}, "junk",
           {"customdata": True}]
    assert curation.selection_rows({"selection": {"points": pts}}, 10).tolist() == [5, 6, 7]
    # without customdata the point index maps through the trace's positions (a filtered trace)
    assert curation.selection_rows({"selection": {"points": pts}}, 50, positions=[10, 20, 30]).tolist() == [5, 6, 7, 30]
    # the bare selection part and attribute-style state objects work too
    assert curation.selection_rows(LASSO_EVENT["selection"], 200).tolist() == [100, 101, 102]

    class State:
        selection = {"points": [{"customdata": 3}]}

    assert curation.selection_rows(State(), 10).tolist() == [3]


def test_align_values_and_columns():
    frame = pd.DataFrame({"uid": ["b", "a", "z"], "value": [2.0, 1.0, 9.0], "stderr": [0.1, 0.2, 0.3]})
    out = curation.align_values(frame, ["a", "b", "c"])
    assert out["uid"].tolist() == ["a", "b", "c"]
    assert out["value"].tolist()[:2] == [1.0, 2.0] and np.isnan(out["value"].iloc[2])
    cl = pd.DataFrame({"uid": ["a", "b"], "cluster": [3, 4]})
    assert curation.align_column(cl, "cluster", ["b", "x", "a"], fill=-1.0).tolist() == [4, -1, 3]
    assert curation.align_column(cl.assign(n=["p", "q"]), "n", ["b", "x"], fill="").tolist() == ["q", ""]


def test_harmful_order_and_decisions(ws):
    v = np.array([0.5, -1.0, np.nan, -0.2])
    assert curation.harmful_order(v).tolist() == [1, 3, 0, 2]
    assert curation.harmful_order(v, exclude=np.array([False, True, False, False])).tolist() == [3, 0, 2]
    ws.decide(1, ["a"], "remove", reason="x")
    ws.decide(1, ["b"], "keep")
    assert curation.decision_column(ws.decisions(1), ["a", "b", "c"]).tolist() == ["remove", "keep", ""]


def test_nearest_neighbours_exclude_self_and_sort():
    X = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0], [0.8, 0.3]], dtype=np.float32)
    idx, sim = curation.nearest_neighbours(X, [0, 2], k=2, chunk=2)
    assert idx[0].tolist() == [1, 4] and 0 not in idx[0]
    assert idx[1][0] == 4 and (np.diff(sim, axis=1) <= 0).all()
    idx, sim = curation.nearest_neighbours(X[:1], [0], k=5)
    assert idx.shape == (1, 0)


def test_predictions_are_cross_fitted_and_cached(ws):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    X = (np.where(y[:, None] == 1, 2.0, -2.0) + rng.normal(0, 1, (60, 4))).astype(np.float32)
    labels = np.where(y == 1, "pos", "neg").astype(object)
    labels[0] = "pos" if labels[0] == "neg" else "neg"  # a flipped label
    uids = [f"u{i}" for i in range(60)]
    df = curation.ensure_predictions(ws, 3, X, uids, list(labels), ["neg", "pos"])
    assert list(df.columns) == ["uid", "pred", "confidence", "p_given"]
    assert df["pred"].iloc[0] != labels[0] and df["p_given"].iloc[0] < 0.5  # the flip is doubted
    assert (df["pred"].iloc[1:] == labels[1:]).mean() > 0.9
    assert curation.load_predictions(ws, 3, uids) is not None
    assert curation.load_predictions(ws, 3, uids[::-1]) is None  # another row order is not reused
    assert curation.load_predictions(ws, 4, uids) is None


def test_method_ranks_and_agreement():
    uids = ["a", "b", "c", "d"]
    knn = pd.DataFrame({"uid": uids, "value": [-1.0, 0.0, 1.0, 2.0]})
    oob = pd.DataFrame({"uid": uids[::-1], "value": [0.0, 1.0, 2.0, -3.0]})  # d, c, b, a
    ranks = curation.method_ranks({"knn_shapley": knn, "data_oob": oob}, uids)
    assert list(ranks.columns) == ["rank_knn_shapley", "rank_data_oob"]
    assert ranks.iloc[0].tolist() == [0.0, 0.0]
    members = list(ranks.columns)
    assert curation.agreeing_members(ranks.iloc[0].to_dict(), members) == ["knn_shapley", "data_oob"]
    assert curation.agreeing_members(ranks.iloc[3].to_dict(), members) == []
    cons = pd.DataFrame({"uid": uids, "value": [0.1, 0.5, 0.6, 0.9], "rank_a": [0.0, 1, 0.5, 0.2],
                         "rank_b": [0.05, 0.3, 1, 0.6]})
    assert list(curation.method_ranks({"consensus": cons}, uids).columns) == ["rank_a", "rank_b"]


def test_selection_rows_of_a_big_lasso_match_point_by_point():
    """A 20,000-point payload (the vectorised path) gives what the point-by-point reading gives."""
    rng = np.random.default_rng(0)
    rows = rng.integers(-5, 25_000, size=20_000)
    pts = [{"curve_number": 0, "point_index": i, "customdata": int(r), "x": 0.1, "y": 0.2}
           for i, r in enumerate(rows)]
    got = curation.selection_rows({"selection": {"points": pts}}, 20_000)
    assert got.tolist() == sorted({int(r) for r in rows if 0 <= r < 20_000})
    pts[7]["customdata"] = [int(rows[7])]  # one point in the list form: read point by point, same answer
    assert curation.selection_rows({"selection": {"points": pts}}, 20_000).tolist() == got.tolist()
