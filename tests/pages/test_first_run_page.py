"""AppTest: the first Compute values starts the progressive first run; preliminary results say what they are."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core import first_run, jobs

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from app_text import markdown_text, shown_text  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _open(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_first_compute_values_starts_the_first_run_and_hides_no_valuation_yet(demo_ws):
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    ws.delete_run(demo_ws["values_id"])
    at = _open("pages/2_Value.py")
    assert any("No valuation yet" in t for t in markdown_text(at))
    at.button(key="value.start").click().run()
    assert not at.exception, at.exception
    job = jobs.get(ws, ws.get_setting(f"job.value.{ds_id}"))
    try:
        assert job.argv[:2] == ["first-run", f"ws:{ds_id}"] and "--method" in job.argv
        from core.__main__ import build_parser

        build_parser().parse_args(job.argv)  # what a user would type
        if jobs.get(ws, job.id).active:
            assert not any("No valuation yet" in t for t in markdown_text(at))
    finally:
        jobs.cancel(ws, job.id)


def test_preliminary_values_are_marked_on_value_map_and_inspect(demo_ws):
    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    full = ws.run(demo_ws["values_id"])
    frame = ws.load_run_frame(full.id).iloc[:100]
    ws.delete_run(full.id)
    rid = ws.create_run("values", dataset_id=ds_id, method="knn_shapley", embedding_id=full.embedding_id,
                        params={"seed": 0, "preliminary": True, "sample": 100, "of": len(uids)})
    ws.save_run_frame(rid, frame)
    ws.update_run(rid, status="done")
    job_id = jobs.start(ws, ["info", f"ws:{ds_id}"], label="value")  # stands in for the running first run
    first_run.set_state(ws, ds_id, phase="full", job=job_id, finish_at=None)
    try:
        for page in ("pages/2_Value.py", "pages/3_Map.py", "pages/4_Inspect.py"):
            at = _open(page)
            note = [t for t in markdown_text(at) if "Preliminary" in t]
            assert note and f"100 of {len(uids):,} rows valued" in note[0].replace("\\", ""), page
    finally:
        jobs.cancel(ws, job_id)
    at = _open("pages/3_Map.py")
    assert any("stopped before it finished" in t.replace("\\", "") for t in markdown_text(at))
    assert pd.notna(frame["value"]).all()


def test_inspect_on_a_preliminary_sample_says_when_neighbours_come(demo_ws):
    """A preliminary run's embeddings are the sample's only: its cards say the neighbours come with the full run."""
    import numpy as np

    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    full = ws.run(demo_ws["values_id"])
    frame = ws.load_run_frame(full.id).iloc[:100]
    whole = ws.embedding_by_id(full.embedding_id)
    rel = "embeddings/sample100.npy"
    ws.write_array(rel, np.asarray(ws.read_array(whole.relpath))[:100])
    emb = ws.register_embedding(dataset_id=ds_id, model=f"{whole.model}@sample100-seed0", dim=whole.dim, n_rows=100,
                                relpath=rel, meta={"preliminary": True, "sample": 100, "of": len(uids)})
    ws.delete_run(full.id)
    rid = ws.create_run("values", dataset_id=ds_id, method="knn_shapley", embedding_id=emb,
                        params={"seed": 0, "preliminary": True, "sample": 100, "of": len(uids)})
    ws.save_run_frame(rid, frame)
    ws.update_run(rid, status="done")
    at = _open("pages/4_Inspect.py")
    shown = shown_text(at)
    assert any("nearest neighbours come with the full run" in t for t in shown)
    assert not any("no embeddings for this run" in t for t in shown)
