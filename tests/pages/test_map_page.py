"""Map page: one Scattergl trace keyed by row position, escaped hover text, colours, filters, rule decisions.

AppTest cannot lasso (tests/test_curation.py checks selection payloads; tests/test_browser.py drags a real lasso).
"""
from __future__ import annotations

import json

import numpy as np
from conftest import HOSTILE, ROOT


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


def _select(app, rows: list[int]) -> None:
    """Run the page with a plotly selection of these row positions, as chromium sends it (customdata only)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    chart = app.get("plotly_chart")[0].proto
    payload = {"selection": {"points": [{"curve_number": 0, "point_number": i, "point_index": i, "customdata": r,
                                         "x": 0.0, "y": 0.0} for i, r in enumerate(rows)],
                             "point_indices": list(range(len(rows))), "box": [], "lasso": []}}
    states = app._tree.get_widget_states()
    states.widgets.append(WidgetState(id=chart.id, string_value=json.dumps(payload)))
    app._run(states)
    assert not app.exception, app.exception


def test_selection_table_reads_texts_from_row_positions_lowest_value_first(app, demo_ws):
    """The selection carries row positions only; the table looks the texts up on the server, lowest value first."""
    app.switch_page("pages/3_Map.py").run()
    rows = [5, 17, 42, 99, 250]
    _select(app, rows)
    assert any(s.value == "Selection: 5 rows" for s in app.subheader)
    table = app.dataframe[0].value
    assert set(table["uid"]) == {demo_ws["uids"][r] for r in rows}
    assert list(table["text"]) == [demo_ws["texts"][demo_ws["uids"].index(u)] for u in table["uid"]]
    values = table["value"].to_numpy(float)
    assert (np.diff(values[~np.isnan(values)]) >= 0).all()
    assert app.button(key="map.remove").label == "Remove 5"


def test_big_maps_send_no_hover_text(app, demo_ws, monkeypatch):
    """Above ui.HOVER_TEXT_MAX points the trace holds no per-point strings (they would be serialised on every rerun
    and sent back with every selected point): customdata is the row, the hover shows numbers only."""
    import ui

    monkeypatch.setattr(ui, "HOVER_TEXT_MAX", 100)
    app.switch_page("pages/3_Map.py").run()
    assert not app.exception, app.exception
    trace = _figure(app)["data"][0]
    assert "text" not in trace and "hovertext" not in trace
    assert "%{customdata}" in trace["hovertemplate"]
    assert not any("alert(1)" in json.dumps(v) for v in trace.values())


def _undo_widget(dataset_id: int) -> None:
    import ui

    ui.undo_button(dataset_id)


def test_undo_in_the_sidebar_takes_back_the_last_batch(app, demo_ws):
    """A lasso Remove, then the sidebar's Undo: the batch is taken back in one go and the undo is recorded.
    (AppTest renders the sidebar on a session's first run only, so the Undo widget runs here on its own page.)"""
    from streamlit.testing.v1 import AppTest

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    app.switch_page("pages/3_Map.py").run()
    _select(app, [1, 2, 3])
    app.button(key="map.remove").click()
    _select(app, [1, 2, 3])
    assert {d.action for d in ws.decisions(ds_id).values()} == {"remove"} and len(ws.decisions(ds_id)) == 3
    first = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    assert any("3 removed" in t.value for t in first.sidebar.text)
    assert [b.key for b in first.sidebar.button] == ["sidebar.undo"]

    tab = AppTest.from_function(_undo_widget, args=(ds_id,), default_timeout=90).run()
    tab.button(key="sidebar.undo").click().run()
    assert not tab.exception, tab.exception
    assert ws.decisions(ds_id) == {}
    assert any(t.value == "undid 3 decisions" for t in tab.text)
    assert [e.action for e in ws.decision_log(ds_id)].count("undo") == 3  # recorded, not deleted
    tab.button(key="sidebar.undo").click().run()  # nothing left: the undo events themselves are not undone
    assert ws.decisions(ds_id) == {}
    assert any(t.value == "nothing left to undo" for t in tab.text)


def test_colour_by_significance_has_a_three_way_legend(app, demo_ws):
    from core.valuation import significance

    app.switch_page("pages/3_Map.py").run()
    app.radio(key="map.colour").set_value("significance").run()
    assert not app.exception, app.exception
    fig = _figure(app)  # a categorical legend (a swatch and a name per verdict) on the one trace
    notes = [a["text"] for a in fig["layout"]["annotations"]]
    assert notes[0] == "<b>significance</b>"
    assert [t.split("</span> ", 1)[1] for t in notes[1:]] == list(significance.VERDICTS)
    assert any(c.value.startswith("harmful: significantly below 0") for c in app.caption)


def test_categorical_colourings_have_a_legend_and_the_value_filter_about_100_steps(app, demo_ws):
    """Labels and decisions are named in a categorical legend (a swatch and a name each, escaped), not a numeric
    colour bar; the value-range filter moves in about 1/100 of the values' range."""
    app.switch_page("pages/3_Map.py").run()
    for mode, names in (("decision", ["none", "keep", "relabel", "remove"]),
                        ("label", sorted(set(demo_ws["labels"])))):
        app.radio(key="map.colour").set_value(mode).run()
        fig = _figure(app)
        assert len(fig["data"]) == 1 and not fig["data"][0]["marker"].get("showscale")
        notes = [a["text"] for a in fig["layout"]["annotations"]]
        assert notes[0] == f"<b>{mode}</b>"
        assert [t.split("</span> ", 1)[1] for t in notes[1:]] == names
    slider = app.slider(key="map.value_range")
    lo, hi = slider.min, slider.max
    assert 50 <= (hi - lo) / slider.step <= 200


def _nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        deepest = max(deepest, depth)
    return deepest


def test_the_header_names_the_valuation_run_and_why_in_plain_words(app, demo_ws):
    """The header says which valuation run colours the map and, on a line of its own, why: no parentheses inside
    parentheses ("(run 1; the newest finished run (run the self-check ...))" read badly)."""
    ws = demo_ws["ws"]
    app.switch_page("pages/3_Map.py").run()
    assert not app.exception, app.exception
    run = ws.run(demo_ws["values_id"])
    captions = [c.value for c in app.caption]
    assert any(f"values: {run.method}, run {run.number}" in c.split(" · ") for c in captions), captions
    assert f"Why valuation run {run.number}: the newest finished run; run the self-check to let the evidence " \
           "choose." in captions
    assert all(_nesting(c) <= 1 for c in captions), captions
