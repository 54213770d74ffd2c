"""Map page: one Scattergl trace keyed by row position, escaped hover text, colours, filters, rule decisions.

AppTest cannot lasso (tests/test_curation.py checks selection payloads; tests/test_browser.py drags a real lasso).
"""
from __future__ import annotations

import json

import numpy as np
from conftest import HOSTILE


def _figure(at) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def test_one_scattergl_trace_with_row_positions(app, demo_ws):
    app.switch_page("pages/3_Map.py").run()
    assert not app.exception, app.exception
    fig = _figure(app)
    assert len(fig["data"]) == 1
    trace = fig["data"][0]
    assert trace["type"] == "scattergl"
    custom = trace["customdata"]
    custom = custom["bdata"] if isinstance(custom, dict) else custom  # plotly may pack arrays as base64
    if isinstance(custom, str):
        import base64

        custom = np.frombuffer(base64.b64decode(custom), dtype=trace["customdata"]["dtype"]).tolist()
    assert sorted(custom) == list(range(301))
    assert fig["layout"]["dragmode"] == "lasso"
    assert trace["marker"]["cmid"] == 0  # values: diverging, centred on 0
    hostile = [t for t in trace["text"] if "alert(1)" in t]
    assert hostile and "<script>" not in hostile[0] and "&lt;script&gt;" in hostile[0]
    assert not any(HOSTILE in m.value for m in app.markdown)


def test_colour_modes_and_filters(app, demo_ws):
    app.switch_page("pages/3_Map.py").run()
    for mode in ("label", "predicted label", "decision", "value"):
        app.radio(key="map.colour").set_value(mode).run()
        assert not app.exception, (mode, app.exception)
        assert len(_figure(app)["data"]) == 1
    label = demo_ws["labels"][0]
    app.multiselect(key="map.labels").set_value([label]).run()
    n_label = demo_ws["labels"].count(label)
    assert any(c.value.startswith(f"{n_label:,} of 301 points shown") for c in app.caption)
    trace = _figure(app)["data"][0]
    assert len(trace["text"]) == n_label


def test_rule_removes_everything_shown(app, demo_ws):
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    app.switch_page("pages/3_Map.py").run()
    label = demo_ws["labels"][0]
    app.multiselect(key="map.labels").set_value([label]).run()
    app.text_input(key="map.rule_reason").input("whole class is noise").run()
    app.button(key="map.rule_remove").click().run()
    assert not app.exception, app.exception
    removed = {u: d for u, d in ws.decisions(ds_id).items() if d.action == "remove"}
    assert len(removed) == demo_ws["labels"].count(label)
    assert {d.source for d in removed.values()} == {"rule"}
    assert {d.reason for d in removed.values()} == {"whole class is noise"}
    app.checkbox(key="map.hide_removed").check().run()
    assert any(c.value.startswith(f"{301 - len(removed):,} of 301") or c.value.startswith("0 of 301")
               for c in app.caption)


def test_map_waits_for_a_projection_job(app, demo_ws, monkeypatch):
    """Without coordinates the page starts the `project` job (once) and shows its progress."""
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    for r in ws.runs("projection", dataset_id=ds_id):
        ws.delete_run(r.id)
    started = []

    import ui

    monkeypatch.setattr(ui.jobs, "start", lambda w, argv, label="": started.append(argv) or "job123")
    monkeypatch.setattr(ui.jobs, "get", lambda w, job_id: None)
    app.switch_page("pages/3_Map.py").run()
    assert not app.exception, app.exception
    assert started == [["project", f"ws:{ds_id}"]]
    assert any("Drawing the map" in i.value for i in app.info)
