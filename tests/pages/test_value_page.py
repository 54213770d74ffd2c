"""AppTest for the Value page: a valuation job records a run; the distribution, past runs, the active-run switch,
the comparison of two runs and the self-check table show."""
from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path

import numpy as np
import pytest

from core import jobs
from core.workspace import Workspace

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/2_Value.py"


def _parses(argv: list[str]) -> None:
    """The job's argv is what a user would type: the CLI parser accepts it (argparse exits on a bad flag)."""
    from core.__main__ import build_parser

    build_parser().parse_args(argv)


def _open(ws: Workspace) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m for m in at.metric if m.label == label).value


def _values_run(ws: Workspace, ds_id: int, uids: list[str], values: np.ndarray, method: str = "random") -> int:
    import pandas as pd

    run_id = ws.create_run("values", dataset_id=ds_id, method=method, params={"seed": 1})
    ws.save_run_frame(run_id, pd.DataFrame({"uid": uids, "value": values, "stderr": np.nan, "count": 1}))
    ws.update_run(run_id, status="done", seconds=0.1)
    return run_id


def test_value_page_shows_the_distribution_and_switches_the_active_run(demo_ws):
    ws, ds_id, uids = demo_ws["ws"], demo_ws["dataset_id"], demo_ws["uids"]
    at = _open(ws)
    assert at.selectbox(key="value.method").value == "ts-dshapley"
    command = next(c.value for c in at.code if c.value.startswith("python -m core value"))
    _parses(shlex.split(command)[3:])  # the default TS-DShapley options are real CLI flags
    knn = ws.load_run_frame(demo_ws["values_id"])
    assert _metric(at, "Rows valued") == f"{len(knn):,}"
    assert _metric(at, "Below 0") == f"{100 * float(np.mean(knn['value'] < 0)):.1f} %"
    from core.valuation import significance
    from core.valuation.base import Values

    sure = significance.summarize(Values.from_frame(knn))
    harmful = "n/a" if sure.with_stderr == 0 else f"{100 * sure.share('harmful'):.1f} %"
    assert _metric(at, "Significantly harmful") == harmful  # "harmful" only when the 95 % interval is below 0
    assert any(sure.headline() in c.value for c in at.caption)

    other = _values_run(ws, ds_id, uids, -knn["value"].to_numpy())  # newest run: reversed ranks
    at.run()
    assert at.selectbox(key="value.shown").value == other  # the newest is active until one is chosen
    # the comparison: reversed values have Spearman -1
    at.selectbox(key="value.cmp_a").set_value(other)
    at.selectbox(key="value.cmp_b").set_value(demo_ws["values_id"]).run()
    assert not at.exception, at.exception
    assert float(_metric(at, "Spearman rank correlation")) == pytest.approx(-1.0, abs=1e-3)

    at.selectbox(key="value.shown").set_value(demo_ws["values_id"]).run()
    at.button(key="value.activate").click().run()
    assert not at.exception, at.exception
    assert ws.get_setting(f"active_values.{ds_id}") == demo_ws["values_id"]
    runs = at.dataframe[0].value
    assert runs.loc[runs["run"] == ws.run(demo_ws["values_id"]).number, "active"].item()


def test_value_page_without_runs_invites_a_first_valuation(demo_ws):
    ws = demo_ws["ws"]
    ws.delete_run(demo_ws["values_id"])
    at = _open(ws)
    assert at.info and not at.dataframe and at.button(key="value.start")


def test_value_page_shows_the_self_check_and_removal_curve(demo_ws):
    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    ws.update_run(demo_ws["values_id"], result={"suggested_removal": 6, "removal": {
        "n_remove": 5, "n_remove_total": 6, "fraction": 0.02, "score": 0.7, "baseline": 0.68,
        "scoring": "3-fold over V", "warnings": [],
        "curve": [{"fraction": f, "n_removed": int(f * 300), "score": 0.68 + f / 10, "score_highest": 0.68 - f,
                   "score_random": 0.68} for f in (0.0, 0.02, 0.05, 0.1)]}})
    audit = ws.create_run("audit", dataset_id=ds_id, method="audit", params={"flip": 0.05})
    ws.update_run(audit, status="done", result={"rows": [
        {"method": "knn_shapley", "auc": 0.81, "precision_at_k": 0.5, "n_flipped": 15, "seconds": 0.1},
        {"method": "label_quality", "auc": 0.88, "precision_at_k": 0.6, "n_flipped": 15, "seconds": 0.3}]})
    at = _open(ws)
    assert _metric(at, "Rows to remove (lowest value first)") == "6"
    table = next(df.value for df in at.dataframe if "ROC-AUC" in df.value.columns)
    assert table["method"].tolist() == ["knn_shapley", "label_quality"]
    assert table["ROC-AUC"].tolist() == [0.81, 0.88]

    at.multiselect(key="value.audit_methods").set_value(["knn-shapley", "random"])
    at.button(key="value.audit").click().run()
    assert not at.exception, at.exception
    job = jobs.get(ws, ws.get_setting(f"job.audit.{ds_id}"))
    jobs.cancel(ws, job.id)
    assert job.argv == ["audit", f"ws:{ds_id}", "--flip", "0.05", "--methods", "knn-shapley,random"]
    _parses(job.argv)


@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("core.cli.value", "core.embed")),
                    reason="the value CLI or the embedding step is not built yet")
def test_value_page_runs_a_valuation_job(demo_ws):
    from core.embed import resolve_model

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    # the fixture's fake vectors stand in for MiniLM's (the job then loads no model; embedding has its own tests)
    fake = ws.embeddings(ds_id)[0]
    ws.register_embedding(dataset_id=ds_id, model=resolve_model(None).key, dim=fake.dim, n_rows=fake.n_rows,
                          relpath=fake.relpath)
    before = {r.id for r in ws.runs("values", dataset_id=ds_id)}
    at = _open(ws)
    at.selectbox(key="value.method").set_value("knn-shapley").run()
    at.button(key="value.start").click().run()
    assert not at.exception, at.exception
    job_id = at.session_state["value.job"]
    _parses(jobs.get(ws, job_id).argv)
    assert ws.get_setting(f"job.value.{ds_id}") == job_id
    job = jobs.wait(ws, job_id, timeout=300)
    assert job.status == "done", jobs.log_tail(job)
    new = [r for r in ws.runs("values", dataset_id=ds_id, status="done") if r.id not in before]
    assert len(new) == 1 and new[0].method in ("knn_shapley", "knn-shapley")
    assert len(ws.load_run_frame(new[0].id)) == len(demo_ws["uids"])
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="value.shown").value == new[0].id
