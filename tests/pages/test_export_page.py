"""Export page: manifest preview, write to a path (curated set or a saved subset), the download button."""
from __future__ import annotations

import json

import pandas as pd


def test_write_the_curated_set(app, demo_ws, tmp_path):
    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    ws.decide(ds_id, uids[:3], "remove", reason="spam", source="lasso")
    app.switch_page("pages/7_Export.py").run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Rows exported"] == "298" and metrics["Removed by decision"] == "3"
    assert app.json and json.loads(app.json[0].proto.body)["rows_after"] == 298  # the manifest preview
    assert app.get("download_button")
    app.selectbox(key="export.format").set_value("jsonl").run()
    out = ws.path / "exports" / "curated.jsonl"  # the app writes only into the workspace's exports folder
    app.text_input(key="export.path").input("curated.jsonl").run()
    app.button(key="export.write").click().run()
    assert not app.exception, app.exception
    df = pd.read_json(out, lines=True, dtype=False)
    assert len(df) == 298 and not set(df["uid"]) & set(uids[:3])
    manifest = json.loads((out.parent / "curated.jsonl.manifest.json").read_text())
    assert {r["uid"]: r["reason"] for r in manifest["removals"]} == {u: "spam" for u in uids[:3]}
    assert any(t.value.startswith("data:") for t in app.text)


def test_export_a_saved_subset(app, demo_ws, tmp_path):
    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    run_id = ws.create_run("selection", dataset_id=ds_id, method="random", params={"budget": 50}, status="done")
    ws.save_run_frame(run_id, pd.DataFrame({"uid": uids[:50], "cluster": -1, "reason": "test"}))
    ws.update_run(run_id, result={"n": 50})
    ws.decide(ds_id, uids[:5], "remove", reason="bad")
    app.switch_page("pages/7_Export.py").run()
    app.radio(key="export.what").set_value("A saved subset").run()
    assert app.selectbox(key="export.subset").value == run_id
    assert {m.label: m.value for m in app.metric}["Rows exported"] == "45"
    out = ws.path / "exports" / "subset.csv"
    app.text_input(key="export.path").input("subset.csv").run()
    app.button(key="export.write").click().run()
    assert not app.exception, app.exception
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(df["uid"]) == uids[5:50]


def test_the_app_writes_only_into_the_exports_folder(app, demo_ws, tmp_path):
    ws = demo_ws["ws"]
    victim = tmp_path / "victim.csv"
    victim.write_text("precious\n")
    app.switch_page("pages/7_Export.py").run()
    for hostile in (str(victim), "../victim.csv", "sub/x.csv", "..", ".hidden.csv"):
        app.text_input(key="export.path").input(hostile).run()
        app.button(key="export.write").click().run()
        assert not app.exception, app.exception
        assert any("not a plain file name" in e.value for e in app.error), hostile
    assert victim.read_text() == "precious\n"
    assert not (ws.path / "victim.csv").exists() and not (ws.path / "exports" / "sub").exists()
    assert not list((ws.path / "exports").glob("*")) if (ws.path / "exports").exists() else True


def test_the_page_says_how_many_rows_are_relabelled(app, demo_ws):
    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    label = ws.dataset(ds_id).classes[0]
    ws.decide(ds_id, uids[10:12], "relabel", note=label)
    app.switch_page("pages/7_Export.py").run()
    assert not app.exception, app.exception
    assert {m.label: m.value for m in app.metric}["Relabelled"] == "2"
    app.text_input(key="export.path").input("relabelled.csv").run()
    app.button(key="export.write").click().run()
    df = pd.read_csv(ws.path / "exports" / "relabelled.csv", dtype=str, keep_default_na=False)
    assert df.set_index("uid").loc[uids[10:12], "label"].tolist() == [label, label]
