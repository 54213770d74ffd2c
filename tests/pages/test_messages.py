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


def test_loader_warnings_belong_to_the_active_dataset(app, demo_ws, tmp_path):
    demo_id = demo_ws["dataset_id"]
    f = tmp_path / "conflicted.csv"
    f.write_text("text,label\nsame,pos\nsame,neg\ngood,pos\nbad,neg\n", encoding="utf-8")
    app.text_input(key="data.path").input(str(f)).run()
    app.button(key="data.load_path").click().run()
    assert not app.exception, app.exception
    assert any("conflicted.csv: 1 text(s) have conflicting labels" in t.replace("\\", "") for t in markdown_text(app))
    app.selectbox(key="data.reopen").set_value(demo_id).run()
    app.button(key="data.open").click().run()  # back to the demo sample: its own warnings, none of the file's
    assert not app.exception, app.exception
    shown = [t.replace("\\", "") for t in markdown_text(app)]
    assert not any("conflicted.csv" in t for t in shown)
    assert any("demo_sample.jsonl" in t and "conflicting labels" in t for t in shown)
    clean = tmp_path / "clean.csv"
    clean.write_text("text,label\none,pos\ntwo,neg\nthree,pos\nfour,neg\n", encoding="utf-8")
    app.text_input(key="data.path").input(str(clean)).run()
    app.button(key="data.load_path").click().run()
    assert not app.exception, app.exception
    assert not any("warning(s) about this data" in w.value for w in app.warning)


def test_the_lasso_table_counts_significantly_harmful_uncertain_and_helpful_rows(app, demo_ws):
    import numpy as np
    import pandas as pd
    from test_map_page import _select

    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    value = np.zeros(len(uids))
    value[[5, 17]] = -1.0  # two sure harmful rows, one sure helpful row, the rest around 0
    value[42] = 1.0
    run = ws.create_run("values", dataset_id=ds_id, method="ts_dshapley", params={})
    ws.save_run_frame(run, pd.DataFrame({"uid": uids, "value": value, "stderr": 0.1, "count": 8}))
    ws.update_run(run, status="done")
    ws.set_setting(f"active_values.{ds_id}", run)
    app.switch_page("pages/3_Map.py").run()
    _select(app, [99, 42, 5, 17, 250])
    assert any(c.value.startswith("2 significantly harmful · 2 uncertain · 1 significantly helpful")
               for c in app.caption)
    table = app.dataframe[0].value
    assert list(table["uid"]) == [uids[5], uids[17], uids[99], uids[250], uids[42]]  # lowest value first


def test_no_valuation_yet_is_hidden_while_a_valuation_runs(app, demo_ws):
    """Deterministic: the running job is a real live process (a sleep) recorded as the dataset's value job."""
    import subprocess

    from core import jobs, procs

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    for r in ws.runs("values", dataset_id=ds_id):
        ws.delete_run(r.id)
    app.switch_page("pages/2_Value.py").run()
    assert any("No valuation yet" in t for t in markdown_text(app))
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        ws._job_insert("j-value", ["first-run", f"ws:{ds_id}"], "value", "/dev/null")
        ws._job_update("j-value", pid=sleeper.pid, pid_start=procs.start_time(sleeper.pid), status="running",
                       message="embedding a sample of 250 rows")
        ws.set_setting(f"job.value.{ds_id}", "j-value")
        assert jobs.get(ws, "j-value").active
        app.run()
        assert not app.exception, app.exception
        assert not any("No valuation yet" in t for t in markdown_text(app))
    finally:
        sleeper.kill()
        sleeper.wait()
