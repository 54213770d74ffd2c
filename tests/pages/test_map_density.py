"""Map page above the density threshold: a density image under a sample, and lassos/boxes resolved on the server
against every row (not only the drawn sample). The threshold is lowered to 100 rows, so the 301-row demo takes the
large path; the selection payloads are what chromium sends (tests/test_browser_scale.py drags a real lasso)."""
from __future__ import annotations

import json

import numpy as np

from core import density, lasso

OCTAGON = [(np.cos(a), np.sin(a)) for a in np.arange(8) * np.pi / 4]


def _figure(at) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def _send(app, selection: dict) -> None:
    """Run the page with this selection on the map (box / lasso geometry, points), as Streamlit's frontend sends it."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    chart = app.get("plotly_chart")[0].proto
    payload = {"selection": {"points": [], "point_indices": [], "box": [], "lasso": [], **selection}}
    states = app._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.id, string_value=json.dumps(payload)))
    app._run(states)
    assert not app.exception, app.exception


def _coords(demo_ws) -> np.ndarray:
    from core.projection import load_projection

    ws = demo_ws["ws"]
    proj = ws.latest_run("projection", dataset_id=demo_ws["dataset_id"])
    return load_projection(ws, proj.id, demo_ws["uids"]).astype(np.float64)


def _polygon(xy: np.ndarray, scale: float = 0.6) -> dict:
    """An octagon around the middle of the map, in data coordinates."""
    c, r = np.nanmedian(xy, axis=0), np.nanstd(xy, axis=0) * scale
    return {"xref": "x", "yref": "y", "x": [float(c[0] + r[0] * a) for a, _ in OCTAGON],
            "y": [float(c[1] + r[1] * b) for _, b in OCTAGON]}


def _brute_pnpoly(xy: np.ndarray, px: list[float], py: list[float]) -> set[int]:
    """The classic pnpoly test, point by point."""
    out = set()
    for i, (x, y) in enumerate(xy):
        inside = False
        j = len(px) - 1
        for k in range(len(px)):
            if ((py[k] > y) != (py[j] > y)) and x < (px[j] - px[k]) * (y - py[k]) / (py[j] - py[k]) + px[k]:
                inside = not inside
            j = k
        if inside:
            out.add(i)
    return out


def test_density_image_under_a_sample(app, demo_ws, monkeypatch):
    monkeypatch.setenv(density.ENV_THRESHOLD, "100")
    monkeypatch.setattr("ui_density.SAMPLE", 50)
    app.switch_page("pages/3_Map.py").run()
    assert not app.exception, app.exception
    fig = _figure(app)
    assert fig["layout"]["meta"]["density"] is True
    assert fig["layout"]["meta"]["in_window"] == 301 and fig["layout"]["meta"]["sample"] == 50
    (image,) = fig["layout"]["images"]
    assert image["source"].startswith("data:image/png;base64,") and image["layer"] == "below"
    assert len(fig["data"]) == 1 and fig["data"][0]["type"] == "scattergl"
    for mode in ("label", "decision", "significance"):
        app.radio(key="map.colour").set_value(mode).run()
        assert not app.exception, (mode, app.exception)
        assert _figure(app)["layout"]["meta"]["colour"] == mode


def test_a_lasso_selects_every_row_under_it_and_remove_records_them(app, demo_ws, monkeypatch):
    monkeypatch.setenv(density.ENV_THRESHOLD, "100")
    monkeypatch.setattr("ui_density.SAMPLE", 20)  # most rows under the lasso are not drawn
    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    app.switch_page("pages/3_Map.py").run()
    before = _figure(app)
    xy = _coords(demo_ws)
    poly = _polygon(xy)
    expected = _brute_pnpoly(xy, poly["x"], poly["y"])
    assert 20 < len(expected) < 301
    _send(app, {"lasso": [poly]})
    assert any(s.value == f"Selection: {len(expected):,} rows" for s in app.subheader)
    # the figure is sent unchanged (a changed one is a new chart the browser draws again, and it would drop the
    # lasso): the chart itself shows the lasso
    assert _figure(app) == before

    app.run()  # a rerun without a new event keeps the selection, and the figure
    assert any(s.value == f"Selection: {len(expected):,} rows" for s in app.subheader)
    assert _figure(app) == before
    # a new colour is a new chart, which no longer shows the lasso: the selection is drawn on it
    app.radio(key="map.colour").set_value("label").run()
    assert any(s.value == f"Selection: {len(expected):,} rows" for s in app.subheader)
    fig = _figure(app)
    assert fig["layout"]["meta"]["selected"] == len(expected)
    assert fig["layout"]["shapes"][0]["type"] == "path"  # the lasso's outline
    assert len(fig["data"]) == 2  # the sample and the selection overlay
    app.text_input(key="map.reason").input("dense blob (density map)").run()
    app.button(key="map.remove").click().run()
    assert not app.exception, app.exception
    removed = {u: d for u, d in ws.decisions(ds_id).items() if d.action == "remove"}
    assert set(removed) == {uids[i] for i in expected}
    assert {d.source for d in removed.values()} == {"lasso"}
    assert {d.reason for d in removed.values()} == {"dense blob (density map)"}

    app.button(key="map.big.clear").click().run()
    assert not any(s.value.startswith("Selection:") for s in app.subheader)
    fig = _figure(app)
    assert len(fig["data"]) == 1 and not fig["layout"].get("shapes")

    # after a clear, the next lasso is shown by the chart again: the figure stays as the clear left it
    _send(app, {"lasso": [_polygon(xy, 0.5)]})
    assert any(s.value.startswith("Selection:") for s in app.subheader)
    assert _figure(app) == fig


def test_a_box_and_a_click_are_resolved_too(app, demo_ws, monkeypatch):
    monkeypatch.setenv(density.ENV_THRESHOLD, "100")
    app.switch_page("pages/3_Map.py").run()
    xy = _coords(demo_ws)
    c = np.nanmedian(xy, axis=0)
    box = {"xref": "x", "yref": "y", "x": [float(c[0]), float(np.nanmax(xy[:, 0]))],
           "y": [float(np.nanmin(xy[:, 1])), float(c[1])]}
    in_box = set(np.flatnonzero(lasso.points_in_box(xy, (box["x"][0], box["x"][1], box["y"][0], box["y"][1]))))
    outside = next(i for i in range(301) if i not in in_box)
    _send(app, {"box": [box], "points": [{"customdata": outside, "curve_number": 0, "point_index": 0}]})
    assert any(s.value == f"Selection: {len(in_box) + 1:,} rows" for s in app.subheader)


def test_below_the_threshold_the_map_stays_one_scattergl_trace(app, demo_ws, monkeypatch):
    monkeypatch.setenv(density.ENV_THRESHOLD, "1000")
    app.switch_page("pages/3_Map.py").run()
    fig = _figure(app)
    assert "images" not in fig["layout"] and len(fig["data"]) == 1


def test_the_view_window_redraws_the_image_of_the_points_inside_it(app, demo_ws, monkeypatch):
    """Streamlit sends no zoom to the server: the window sliders redraw the image (and the sample) for a window;
    "Zoom to the selection" sets them to the selection's bounding box."""
    monkeypatch.setenv(density.ENV_THRESHOLD, "100")
    app.switch_page("pages/3_Map.py").run()
    xy = _coords(demo_ws)
    c = np.nanmedian(xy, axis=0)
    lo_x, hi_x = app.slider(key="map.big.xr").value
    lo_y, hi_y = app.slider(key="map.big.yr").value
    app.slider(key="map.big.xr").set_value((lo_x, float(c[0]))).run()
    app.slider(key="map.big.yr").set_value((float(c[1]), hi_y)).run()
    assert not app.exception, app.exception
    layout = _figure(app)["layout"]
    x0, x1 = layout["xaxis"]["range"]
    y0, y1 = layout["yaxis"]["range"]
    assert x1 < hi_x and y0 > lo_y
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    assert layout["meta"]["in_window"] == int(inside.sum()) < 301
    (image,) = layout["images"]
    assert (image["x"], image["y"]) == (x0, y1) and image["sizex"] == x1 - x0

    app.button(key="map.big.whole").click().run()
    poly = _polygon(xy, 0.4)
    _send(app, {"lasso": [poly]})
    app.button(key="map.big.zoom").click().run()
    assert not app.exception, app.exception
    layout = _figure(app)["layout"]
    (x0, x1), (y0, y1) = layout["xaxis"]["range"], layout["yaxis"]["range"]
    sel = xy[sorted(_brute_pnpoly(xy, poly["x"], poly["y"]))]  # the selected rows, all inside the new window
    assert (sel[:, 0] >= x0).all() and (sel[:, 0] <= x1).all() and (sel[:, 1] >= y0).all() and (sel[:, 1] <= y1).all()
    assert x1 - x0 < hi_x - lo_x
