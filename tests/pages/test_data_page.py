"""Data page: summary of the active dataset, loading sources, loader errors as messages, the Embed button."""
from __future__ import annotations

from conftest import HOSTILE, markdown_text, shown_text

from core import jobs


def test_summary_of_the_active_dataset(app, demo_ws):
    assert not app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Rows"] == "301" and metrics["Classes"] == "3"
    assert len(app.get("plotly_chart")) == 2  # class counts, text lengths
    assert int(metrics["Label conflicts"]) >= 1 and len(app.dataframe) >= 2  # conflicts, duplicates, rows
    assert any("conflicting labels" in t for t in markdown_text(app))  # loader warnings, escaped


def test_dataset_text_is_shown_verbatim(app):
    assert HOSTILE in shown_text(app)
    assert not any("<script>" in m or "example.com" in m for m in markdown_text(app))


def test_loader_error_is_a_message_not_a_traceback(app, tmp_path):
    app.text_input(key="data.path").input(str(tmp_path / "missing.csv")).run()
    app.button(key="data.load_path").click().run()
    assert not app.exception
    assert app.error and "missing.csv" in app.error[0].value.replace("\\", "")  # Markdown-escaped message


def test_load_a_file_from_a_path(app, demo_ws, tmp_path):
    f = tmp_path / "tiny.csv"
    f.write_text("sentence,sentiment\ngood film,pos\nbad film,neg\nfine film,pos\nawful film,neg\n", encoding="utf-8")
    app.text_input(key="data.path").input(str(f)).run()
    app.button(key="data.load_path").click().run()
    assert not app.exception, app.exception
    ws = demo_ws["ws"]
    rec = ws.dataset(ws.get_setting("active_dataset"))
    assert rec.n_rows == 4 and rec.classes == ["neg", "pos"]
    assert {m.label: m.value for m in app.metric}["Rows"] == "4"


def test_reopen_and_embed_button_starts_a_job(app, demo_ws, tmp_path):
    ws = demo_ws["ws"]
    f = tmp_path / "tiny.jsonl"
    f.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    app.text_input(key="data.path").input(str(f)).run()
    app.button(key="data.load_path").click().run()
    new_id = ws.get_setting("active_dataset")
    assert new_id != demo_ws["dataset_id"]
    app.button(key="data.embed").click().run()  # no embeddings yet for this dataset
    job_id = ws.get_setting(f"job.embed.{new_id}")
    assert job_id is not None
    job = jobs.cancel(ws, job_id, timeout=5)  # do not let it load a model during the tests
    assert job.argv == ["embed", f"ws:{new_id}"]
    # reopen the demo sample from the workspace list
    app.selectbox(key="data.reopen").set_value(demo_ws["dataset_id"]).run()
    app.button(key="data.open").click().run()
    assert ws.get_setting("active_dataset") == demo_ws["dataset_id"]
    assert not app.exception


def test_a_changed_file_shows_what_carried_over_and_its_versions(app, demo_ws, tmp_path):
    from core import data

    ws = demo_ws["ws"]
    f = tmp_path / "v.csv"
    f.write_text("text,label\ngood film,pos\nbad film,neg\nfine film,pos\nawful film,neg\n", encoding="utf-8")
    app.text_input(key="data.path").input(str(f)).run()
    app.button(key="data.load_path").click().run()
    first = ws.get_setting("active_dataset")
    ws.decide(first, [data.column(data.open_dataset(ws, f"ws:{first}").ds, "uid")[1]], "remove", reason="x")
    f.write_text("text,label\r\ngood film,pos\r\nbad film,neg\r\nfine film,pos\r\nawful film,neg\r\nnew,pos\r\n",
                 encoding="utf-8")
    app.button(key="data.load_path").click().run()
    assert not app.exception, app.exception
    assert ws.get_setting("active_dataset") != first
    assert any("1 decision(s) carried over" in t and "0 decided row(s) are gone" in t
               for t in (m.replace("\\", "") for m in markdown_text(app)))  # a loader warning, escaped
    versions = [d for d in app.dataframe if "version" in d.value.columns]
    assert versions and versions[0].value["version"].tolist() == [1, 2]


def test_the_page_counts_truncated_texts(app, demo_ws, tmp_path):
    f = tmp_path / "long.csv"
    long = " ".join(f"word{i}" for i in range(400))
    f.write_text(f"text,label\n{long},pos\nshort,neg\nfine,pos\n", encoding="utf-8")
    app.text_input(key="data.path").input(str(f)).run()
    app.button(key="data.load_path").click().run()
    assert not app.exception, app.exception
    assert {m.label: m.value for m in app.metric}["Truncated texts"] == "1"


def test_a_ragged_row_is_named_or_left_out_on_request(app, demo_ws, tmp_path):
    f = tmp_path / "rag.csv"
    f.write_text("text,label\nhello,world,pos\ngood,pos\nbad,neg\n", encoding="utf-8")
    app.text_input(key="data.path").input(str(f)).run()
    app.button(key="data.load_path").click().run()
    assert not app.exception and app.error and "row 1" in app.error[0].value
    app.checkbox(key="data.path.skip_bad_rows").check().run()
    app.button(key="data.load_path").click().run()
    assert not app.exception, app.exception
    ws = demo_ws["ws"]
    assert ws.dataset(ws.get_setting("active_dataset")).n_rows == 2
    assert any("left out row 1" in t for t in markdown_text(app))  # a loader warning, escaped


def test_a_dataset_with_no_values_points_to_compute_values(app, demo_ws, tmp_path):
    """A newcomer who starts on the Data page is sent to the one button that gives a first map soon."""
    assert not any("Next: **Compute values**" in t for t in markdown_text(app))  # the demo sample is valued
    f = tmp_path / "fresh.csv"
    f.write_text("text,label\ngood film,pos\nbad film,neg\nfine film,pos\nawful film,neg\n", encoding="utf-8")
    app.text_input(key="data.path").input(str(f)).run()
    app.button(key="data.load_path").click().run()
    assert not app.exception, app.exception
    assert any("Next: **Compute values** on the Value page" in t for t in markdown_text(app))
    assert app.button(key="data.embed").proto.type != "primary"  # embedding alone is not the way forward
