"""Inspect page: harmful rows first as cards with evidence; decisions per card; paging; no values -> a hint."""
from __future__ import annotations

import re

from conftest import HOSTILE, markdown_text, shown_text


def test_cards_show_the_evidence(app, demo_ws):
    app.switch_page("pages/4_Inspect.py").run()
    assert not app.exception, app.exception
    assert app.code[0].value == HOSTILE  # lowest value first, verbatim
    assert not any("<script>" in m or "example.com" in m for m in markdown_text(app))
    text = "\n".join(shown_text(app))
    assert "source classifier predicts:" in text and "value: -" in text
    assert "neighbours share its label" in text
    assert len(app.code) == 10  # page size


def test_decide_per_card(app, demo_ws):
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    app.switch_page("pages/4_Inspect.py").run()
    hostile = demo_ws["hostile_uid"]
    app.selectbox(key=f"inspect.reason.{hostile}").set_value("noise / off-topic").run()
    app.button(key=f"inspect.remove.{hostile}").click().run()
    assert not app.exception, app.exception
    d = ws.decisions(ds_id)[hostile]
    assert (d.action, d.reason, d.source) == ("remove", "noise / off-topic", "manual")
    assert HOSTILE not in [c.value for c in app.code]  # decided rows are hidden
    second = next(k.removeprefix("inspect.relabel.") for k in (b.key for b in app.button)
                  if k and k.startswith("inspect.relabel."))
    target = app.selectbox(key=f"inspect.target.{second}").value
    app.button(key=f"inspect.relabel.{second}").click().run()
    d = ws.decisions(ds_id)[second]
    assert d.action == "relabel" and d.note == target


def test_paging(app):
    app.switch_page("pages/4_Inspect.py").run()
    first = [c.value for c in app.code]
    app.button(key="inspect.next").click().run()
    assert any(t.value.startswith("page 2 of") for t in app.text)
    assert [c.value for c in app.code] != first
    app.button(key="inspect.prev").click().run()
    assert [c.value for c in app.code] == first


def test_without_values_points_to_the_value_page(app, demo_ws):
    ws = demo_ws["ws"]
    for r in ws.runs("values", dataset_id=demo_ws["dataset_id"]):
        ws.delete_run(r.id)
    app.switch_page("pages/4_Inspect.py").run()
    assert not app.exception, app.exception
    assert any("No valuation yet" in i.value for i in app.info)
    assert not app.code


def test_a_run_recorded_by_the_cli_shows_its_estimate_count(app, demo_ws, monkeypatch):
    """The value step saves its frame in the one schema the page reads: each card names its real estimate count."""
    from core.__main__ import main
    from core.cli import common

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    emb = ws.embeddings(ds_id)[0]
    monkeypatch.setattr(common, "get_embeddings", lambda args, ws, loaded, on_progress=None:
                        (emb.id, ws.read_array(emb.relpath)))
    assert main(["--workspace", str(ws.path), "value", f"ws:{ds_id}", "--method", "knn-shapley"]) == 0
    run = ws.latest_run("values", dataset_id=ds_id)
    assert run.id != demo_ws["values_id"]
    ws.set_setting(f"active_values.{ds_id}", run.id)
    app.switch_page("pages/4_Inspect.py").run()
    assert not app.exception, app.exception
    facts = [t for t in shown_text(app) if "estimates)" in t]
    assert len(facts) == 10 and not any("(– estimates)" in t for t in facts)
    counts = set(ws.load_run_frame(run.id)["count"].tolist())
    shown = {int(m) for t in facts for m in re.findall(r"\((\d+) estimates\)", t)}
    assert shown and shown <= counts and 0 not in shown


def test_cards_say_how_sure_each_value_is(app, demo_ws):
    app.switch_page("pages/4_Inspect.py").run()
    assert not app.exception, app.exception
    facts = [line for t in shown_text(app) for line in t.splitlines() if line.startswith("value:")]
    assert len(facts) == 10 and all(re.search(r"estimates\) · (harmful|uncertain|helpful): ", t) for t in facts)
