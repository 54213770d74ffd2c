"""AppTest: the map colours by the method the self-check ranks best, the Value page says why (and TS-DShapley stays
one click away), and the self-check compares values with a column of human agreement when the data has one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.workspace import Workspace

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/2_Value.py"


def _open() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _values_run(ws: Workspace, ds_id: int, uids, values, method: str) -> int:
    run_id = ws.create_run("values", dataset_id=ds_id, method=method, params={"seed": 0})
    ws.save_run_frame(run_id, pd.DataFrame({"uid": uids, "value": values, "stderr": np.nan, "count": 1}))
    ws.update_run(run_id, status="done", seconds=0.1)
    return run_id


def _audit(ws: Workspace, ds_id: int, aucs: dict[str, float]) -> None:
    run = ws.create_run("audit", dataset_id=ds_id, method="audit", params={"flip": 0.05})
    ws.update_run(run, status="done", result={"rows": [
        {"method": m, "auc": a, "precision_at_k": 0.5, "n_flipped": 15, "seconds": 0.1} for m, a in aucs.items()]})


def _info(at: AppTest) -> str:
    return next(i.value for i in at.info if "The map colours by" in i.value)


def test_the_page_shows_why_the_map_colours_by_the_self_checks_best_method(demo_ws):
    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    rng = np.random.default_rng(0)
    ts = _values_run(ws, ds_id, uids, rng.normal(size=len(uids)), "ts_dshapley")
    cons = _values_run(ws, ds_id, uids, rng.uniform(size=len(uids)), "consensus")
    newest = _values_run(ws, ds_id, uids, rng.normal(size=len(uids)), "loo")
    at = _open()
    # no self-check yet: the newest run, and the page says so
    assert f"run {ws.run(newest).number} (loo)" in _info(at) and "run the self-check" in _info(at)

    _audit(ws, ds_id, {"ts-dshapley": 0.80, "knn-shapley": 0.78, "label-quality": 0.86, "consensus": 0.91,
                       "random": 0.95})  # random never wins, whatever its luck
    at.run()
    assert not at.exception, at.exception
    info = _info(at)
    assert f"run {ws.run(cons).number} (consensus)" in info
    assert "consensus: finds injected flips best here, AUC 0.91 vs 0.86 (label-quality)" in info
    import ui

    assert ui.active_values_run(ds_id).id == cons  # what the map and Inspect read
    at.switch_page("pages/3_Map.py").run()
    assert not at.exception, at.exception
    assert any(f"values: consensus, run {ws.run(cons).number}" in c.value for c in at.caption)
    assert any(c.value.startswith(f"Why valuation run {ws.run(cons).number}: consensus: finds injected flips best "
                                  "here, AUC 0.91 vs 0.86") for c in at.caption)
    at.switch_page(PAGE).run()

    # TS-DShapley is one click away, and the user's choice then wins over the evidence
    at.button(key="value.use_default").click().run()
    assert not at.exception, at.exception
    assert ws.get_setting(f"active_values.{ds_id}") == ts
    assert f"run {ws.run(ts).number} (ts-dshapley)" in _info(at) and "you chose this run" in _info(at)


def test_the_best_method_without_a_run_is_offered_and_the_best_with_one_is_used(demo_ws):
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    knn = demo_ws["values_id"]  # the fixture's knn-shapley run
    _audit(ws, ds_id, {"knn_shapley": 0.81, "label_quality": 0.88})
    at = _open()
    info = _info(at)
    assert f"run {ws.run(knn).number}" in info and "knn-shapley: the best self-checked method with a finished run, AUC 0.81" in info
    assert "label-quality, AUC 0.88, has no run yet" in info
    assert at.button(key="value.compute_best").label == "Compute label-quality to colour the map by it"


def test_the_self_check_compares_values_with_human_agreement(demo_ws, tmp_path):
    from core import data

    ws = demo_ws["ws"]
    n = 60
    rng = np.random.default_rng(1)
    conf = np.round(rng.uniform(0.3, 1.0, n), 3)
    conf_col = [f"{c:.3f}" for c in conf]
    conf_col[:5] = [""] * 5  # missing on some rows, as in the demo
    path = tmp_path / "rated.csv"
    pd.DataFrame({"text": [f"tweet number {i}" for i in range(n)], "label": ["a", "b", "c"] * (n // 3),
                  "confidence": conf_col}).to_csv(path, index=False)
    loaded = data.open_dataset(ws, str(path))
    ws.set_setting("active_dataset", loaded.dataset_id)
    uids = [str(u) for u in loaded.ds["uid"]]
    _values_run(ws, loaded.dataset_id, uids, conf * 2 - 1, "knn_shapley")  # tracks agreement exactly
    _values_run(ws, loaded.dataset_id, uids, -conf, "random")  # the opposite
    at = _open()
    assert at.selectbox(key="value.agreement_col").value == "confidence"
    table = next(df.value for df in at.dataframe if "Spearman with confidence" in df.value.columns)
    row = table.set_index("method")
    assert row.loc["knn-shapley", "Spearman with confidence"] == pytest.approx(1.0)
    assert row.loc["random", "Spearman with confidence"] == pytest.approx(-1.0)
    assert row.loc["knn-shapley", "rows with a number"] == n - 5
    low = np.sort(conf[5:])[:3].mean()  # 5 % of 55 rows, rounded: the 3 lowest-valued
    assert row.loc["knn-shapley", "mean confidence, lowest 5 %"] == pytest.approx(low, abs=1e-3)
    assert row.loc["random", "mean confidence, lowest 5 %"] > row.loc["knn-shapley", "mean confidence, all rows"]


def test_the_self_check_names_the_agreement_column_and_the_consensus_tracks_it(demo_ws, tmp_path, monkeypatch):
    from core import data
    import ui

    ws = demo_ws["ws"]
    n = 60
    conf = np.round(np.random.default_rng(2).uniform(0.3, 1.0, n), 3)
    path = tmp_path / "rated.csv"
    pd.DataFrame({"text": [f"tweet number {i}" for i in range(n)], "label": ["a", "b", "c"] * (n // 3),
                  "confidence": [f"{c:.3f}" for c in conf]}).to_csv(path, index=False)
    loaded = data.open_dataset(ws, str(path))
    ds_id = loaded.dataset_id
    ws.set_setting("active_dataset", ds_id)
    uids = [str(u) for u in loaded.ds["uid"]]
    _values_run(ws, ds_id, uids, conf, "label_quality")
    started = []
    monkeypatch.setattr(ui, "start_job", lambda name, d, argv: started.append(argv) or "job")
    at = _open()
    assert at.selectbox(key="value.audit_agreement").value == "confidence"
    at.button(key="value.audit").click().run()
    assert started[-1][:2] == ["audit", f"ws:{ds_id}"] and started[-1][-2:] == ["--agreement", "confidence"]
    run = ws.create_run("audit", dataset_id=ds_id, method="audit", params={"flip": 0.05})
    ws.update_run(run, status="done", result={"agreement_column": "confidence", "rows": [
        {"method": m, "auc": a, "agreement": r, "precision_at_k": 0.5, "n_flipped": 3, "seconds": 0.1}
        for m, a, r in (("label-quality", 0.86, 0.36), ("consensus", 0.90, 0.38))]})
    at.run()
    assert not at.exception, at.exception
    table = next(df.value for df in at.dataframe if "ROC-AUC" in df.value.columns)
    assert table.set_index("method").loc["consensus", "Spearman with confidence"] == pytest.approx(0.38)
    at.button(key="value.compute_best").click().run()  # the consensus has no run yet: it tracks the column too
    assert started[-1] == ["value", f"ws:{ds_id}", "--method", "consensus", "--agreement", "confidence"]
