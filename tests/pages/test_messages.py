"""Messages that match what is shown (issue 17): each message says what the page shows, and no more."""
from __future__ import annotations

import pytest

pytest.importorskip("streamlit.testing.v1")

from conftest import markdown_text  # noqa: E402


def test_winnow_commands_in_messages_are_code_and_data_stays_escaped():
    import ui

    msg = "2 texts conflict ('a `b` [x](http://e)'); review them with `python -m core info`"
    out = ui.plain(msg)
    assert out.endswith("with `python -m core info`")  # a code span, not \\`python ...\\`
    assert "\\`b\\`" in out and "\\[x\\]\\(http" in out  # the data's backticks and link stay literal
    assert ui.plain("`python -m core info") == "\\`python \\-m core info"  # unpaired: literal
    assert ui.plain("a\nb") == "a  \nb"


def test_keep_on_inspect_records_no_problem_reason(app, demo_ws):
    ws, ds_id, uid = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["hostile_uid"]
    app.switch_page("pages/4_Inspect.py").run()
    assert app.selectbox(key=f"inspect.reason.{uid}").value == "mislabelled"  # the default for Remove
    app.button(key=f"inspect.keep.{uid}").click().run()
    assert not app.exception, app.exception
    d = ws.decisions(ds_id)[uid]
    assert d.action == "keep" and d.reason == ""


def test_value_page_says_what_its_seconds_count(app, demo_ws):
    app.switch_page("pages/2_Value.py").run()
    metric = next(m for m in app.metric if "seconds" in m.label.lower())
    assert metric.label == "Valuation seconds" and "embedding" in metric.help


def test_wrote_n_rows_is_cleared_when_the_export_target_changes(app, demo_ws):
    app.switch_page("pages/7_Export.py").run()
    app.text_input(key="export.path").input("first.csv").run()
    app.selectbox(key="export.format").set_value("csv").run()
    app.text_input(key="export.path").input("first.csv").run()
    app.button(key="export.write").click().run()
    assert not app.exception, app.exception
    assert any(s.value.startswith("Wrote ") for s in app.success)
    app.text_input(key="export.path").input("second.csv").run()
    assert not any(s.value.startswith("Wrote ") for s in app.success)
    assert not any("Wrote" in t for t in markdown_text(app))
