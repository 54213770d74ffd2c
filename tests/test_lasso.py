"""core.lasso: a lasso or box on the map selects every row under it (server side), not only the drawn points."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import lasso

from recorded_selection import LASSO_EVENT  # a lasso over customdata = rows 100..149, recorded in chromium


def brute_inside(px: float, py: float, poly: list[tuple[float, float]]) -> bool:
    """The textbook even-odd ray cast (W. R. Franklin's pnpoly), one point at a time."""
    inside = False
    j = len(poly) - 1
    for i in range(len(poly)):
        (xi, yi), (xj, yj) = poly[i], poly[j]
        if (yi > py) != (yj > py) and px < (xj - xi) * (py - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


coord = st.one_of(st.integers(-4, 4).map(float),  # shared vertices and coordinates: ties on edges and vertices
                  st.floats(-5, 5, allow_nan=False, allow_infinity=False))
points2 = st.tuples(coord, coord)


@settings(max_examples=150, deadline=None)
@given(poly=st.lists(points2, min_size=3, max_size=12), pts=st.lists(points2, min_size=1, max_size=40))
def test_points_in_polygon_matches_brute_force(poly, pts):
    got = lasso.points_in_polygon(np.array(pts), np.array(poly))
    assert got.tolist() == [brute_inside(x, y, poly) for x, y in pts]


def test_a_big_lasso_matches_every_edge_against_every_point():
    """200,000 rows, a self-crossing 60-vertex lasso: the banded search equals the dense points x edges test."""
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(200_000, 2))
    t = np.sort(rng.uniform(0, 2 * np.pi, 60))
    poly = np.column_stack([np.cos(t), np.sin(3 * t)]) * rng.uniform(0.5, 2.0, size=(60, 1))
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    px, py = xy[:, :1], xy[:, 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = ((y1 > py) != (y2 > py)) & (px < (x1 - x2) * (py - y2) / (y1 - y2) + x2)
    dense = cross.sum(axis=1) % 2 == 1
    got = lasso.points_in_polygon(xy, poly)
    assert 1000 < got.sum() < 199_000
    np.testing.assert_array_equal(got, dense)


def test_the_recorded_lasso_selects_every_row_under_it_not_only_the_drawn_points():
    rng = np.random.default_rng(1)
    xy = rng.uniform(-3, 3, size=(5000, 2))
    drawn = [(p["x"], p["y"]) for p in LASSO_EVENT["selection"]["points"]]
    xy[100:103] = drawn
    rows = lasso.rows_in_selection(LASSO_EVENT, xy)
    poly = list(zip(LASSO_EVENT["selection"]["lasso"][0]["x"], LASSO_EVENT["selection"]["lasso"][0]["y"]))
    expected = [i for i, (x, y) in enumerate(xy.tolist()) if brute_inside(x, y, poly)]
    assert rows.tolist() == expected
    assert {100, 101, 102} <= set(rows.tolist()) and len(rows) > 100  # many more rows than the three drawn points
    # the bare selection part and attribute-style objects give the same
    assert lasso.rows_in_selection(LASSO_EVENT["selection"], xy).tolist() == expected

    class State:
        selection = LASSO_EVENT["selection"]

    assert lasso.rows_in_selection(State(), xy).tolist() == expected
    # coordinates of a filtered subset: positions map back to rows
    keep = np.arange(0, 5000, 2)
    sub = lasso.rows_in_selection(LASSO_EVENT, xy[keep], rows=keep)
    assert sub.tolist() == [r for r in expected if r % 2 == 0]


def test_boxes_lassos_and_their_union():
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0], [np.nan, 0.5], [0.5, np.inf]])
    box = {"selection": {"box": [{"xref": "x", "yref": "y", "x": [1.5, -0.5], "y": [-0.5, 1.0]}], "lasso": []}}
    assert lasso.rows_in_selection(box, xy).tolist() == [0, 1]  # corners in any order; edges included
    tri = {"xref": "x", "yref": "y", "x": [4, 6, 5], "y": [4, 4, 6]}  # open polygon: closed implicitly
    both = {"selection": {"box": box["selection"]["box"], "lasso": [tri]}}
    assert lasso.rows_in_selection(both, xy).tolist() == [0, 1, 3]


@pytest.mark.parametrize("event", [None, {}, {"selection": {}}, {"selection": {"points": [], "box": [], "lasso": []}},
                                   {"selection": {"box": None, "lasso": None}}])
def test_no_shape_selects_nothing(event):
    assert lasso.rows_in_selection(event, np.zeros((3, 2))).size == 0


def test_malformed_and_other_axes_shapes_are_skipped():
    sel = {"selection": {"lasso": [{"x": [0, 1], "y": [0, 1]},  # two vertices: no area
                                   {"x": [0, 1, "a"], "y": [0, 1, 2]},
                                   {"x": [0, 1, 2], "y": [0, 1]},
                                   {"xref": "x2", "yref": "y2", "x": [-9, 9, 0], "y": [-9, -9, 9]},
                                   "junk"],
                         "box": [{"x": [0], "y": [0, 1]}, {"x": [0, float("nan")], "y": [0, 1]}]}}
    polygons, boxes = lasso.selection_shapes(sel)
    assert polygons == [] and boxes == []
    assert lasso.selection_shapes(sel, xref="x2", yref="y2")[0][0].shape == (3, 2)


def test_bad_coordinates_are_a_value_error():
    with pytest.raises(ValueError, match=r"\(n, 2\) array, got shape \(3,\)"):
        lasso.rows_in_selection(LASSO_EVENT, np.zeros(3))
    with pytest.raises(ValueError, match="rows has 2 entries for 3 coordinates"):
        lasso.rows_in_selection(LASSO_EVENT, np.zeros((3, 2)), rows=[0, 1])
