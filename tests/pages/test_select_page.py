"""AppTest for the Select page: clusters and a preview show, a weight follows the slider, saving records a subset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import jobs
from core.workspace import Workspace

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/5_Select.py"


@pytest.fixture
def clustered(demo_ws):
    """The shared demo workspace (tests/pages/conftest.py) plus 4 clusters saved as the cluster step saves them
    (nearest of 4 fixed centroids: instant, unlike k-means with restarts)."""
    from core.selection import Clusters, summarize_clusters
    from core.selection.store import save_clusters

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    emb = ws.embeddings(ds_id)[0]
    X = np.asarray(ws.read_array(emb.relpath), dtype=np.float32)
    hostile = demo_ws["uids"].index(demo_ws["hostile_uid"])
    others = np.random.default_rng(0).choice(np.delete(np.arange(len(X)), hostile), 3, replace=False)
    centroids = X[[hostile, *others]]  # the hostile row is nearest its cluster's centroid: shown as an example
    labels = np.argmax(X @ centroids.T, axis=1).astype(np.int64)
    assert len(np.unique(labels)) == 4
    cl = Clusters(uids=np.asarray(demo_ws["uids"]), labels=labels, centroids=centroids, k=4, seed=0,
                  params={"k_requested": 4})
    summ = summarize_clusters(cl, demo_ws["texts"], demo_ws["labels"], X, None,
                              classes=ws.dataset(ds_id).classes)
    save_clusters(ws, ds_id, cl, embedding_id=emb.id, summaries=summ)
    return demo_ws


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


def test_select_page_previews_and_saves(clustered):
    ws, ds_id, uids = clustered["ws"], clustered["dataset_id"], clustered["uids"]
    ws.decide(ds_id, [uids[0]], "remove", reason="test")
    ws.decide(ds_id, [uids[1]], "keep", reason="test")
    at = _open(ws)
    assert at.selectbox(key="select.strategy").value == "kmq"
    # four clusters, each with a weight slider beside its summary
    assert {s.key for s in at.slider if s.key.startswith("select.w.")} == {f"select.w.{c}" for c in range(4)}
    budget = round(0.3 * (len(uids) - 1))
    assert _metric(at, "Rows in the subset") == f"{budget:,}"
    assert _metric(at, "Removed rows left out") == "1" and _metric(at, "Pinned rows kept") == "1"
    assert _metric(at, "vs last saved subset") == "—"

    # a weight of 0 empties cluster 0 (the preview follows; the weight survives reruns)
    at.slider(key="select.w.0").set_value(0.0).run()
    assert not at.exception, at.exception
    clusters_run = ws.latest_run("clusters", dataset_id=ds_id).id
    assert at.session_state["select.weights"][clusters_run] == {0: 0.0}
    assert _metric(at, "Rows in the subset") == f"{budget:,}"

    at.button(key="select.save").click().run()
    assert not at.exception, at.exception
    runs = ws.runs("selection", dataset_id=ds_id)
    assert len(runs) == 1 and runs[0].result["n"] == budget
    assert runs[0].params["weights"] == {"0": 0.0} and runs[0].params["values_run_id"] == clustered["values_id"]
    frame = ws.load_run_frame(runs[0].id)
    assert (frame["cluster"] != 0).all() or set(frame.loc[frame["cluster"] == 0, "uid"]) <= {uids[1]}
    assert uids[0] not in set(frame["uid"]) and uids[1] in set(frame["uid"])  # decisions honoured
    assert runs[0].number in at.dataframe[0].value["subset"].tolist()  # listed under Saved subsets
    assert _metric(at, f"vs saved subset {runs[0].number}") == "+0 / −0"


def test_select_page_count_budget_and_other_strategies(clustered):
    ws = clustered["ws"]
    at = _open(ws)
    at.radio(key="select.budget_mode").set_value("count").run()
    at.number_input(key="select.count").set_value(50).run()
    assert not at.exception, at.exception
    assert _metric(at, "Rows in the subset") == "50"
    for strategy in ("random", "stratified", "top_value", "iterative"):
        at.selectbox(key="select.strategy").set_value(strategy).run()
        assert not at.exception, at.exception
        assert _metric(at, "Rows in the subset") == "50", strategy
    at.selectbox(key="select.strategy").set_value("drop_negative").run()
    assert not at.exception, at.exception
    n_negative = int((ws.load_run_frame(clustered["values_id"])["value"] < 0).sum())
    assert _metric(at, "Rows in the subset") == f"{len(clustered['uids']) - n_negative:,}"


def test_select_page_shows_cluster_texts_verbatim(clustered):
    from demo_workspace import HOSTILE

    at = _open(clustered["ws"])
    assert any(HOSTILE in t.value for t in at.text)  # an example text, shown with st.text
    assert not any(HOSTILE in m.value for m in at.markdown)
    assert not any(HOSTILE in getattr(e, "label", "") for e in at.expander)


def test_select_page_cluster_button_starts_a_job(clustered):
    ws, ds_id = clustered["ws"], clustered["dataset_id"]
    at = _open(ws)
    at.radio(key="select.k_mode").set_value("set").run()
    at.number_input(key="select.k").set_value(3).run()
    at.button(key="select.cluster").click().run()
    assert not at.exception, at.exception
    job = jobs.get(ws, ws.get_setting(f"job.cluster.{ds_id}"))
    assert job.argv == ["cluster", f"ws:{ds_id}", "--k", "3"]
    _parses(job.argv)
    jobs.cancel(ws, job.id)  # it would embed with the real model; the CLI has its own tests


def test_select_page_saves_iterative_refinement_as_a_job(clustered):
    ws, ds_id = clustered["ws"], clustered["dataset_id"]
    at = _open(ws)
    at.selectbox(key="select.strategy").set_value("iterative").run()
    at.slider(key="select.w.2").set_value(2.0).run()
    at.button(key="select.save").click().run()
    assert not at.exception, at.exception
    job = jobs.get(ws, ws.get_setting(f"job.select.{ds_id}"))
    jobs.cancel(ws, job.id)
    argv = job.argv
    assert argv[:4] == ["select", f"ws:{ds_id}", "--strategy", "iterative"]
    assert argv[argv.index("--weights") + 1] == "2=2" and argv[argv.index("--k") + 1] == "4"
    assert argv[argv.index("--run") + 1] == str(clustered["values_id"])
    _parses(argv)


def test_select_preview_warns_when_a_class_is_dropped(clustered):
    ws, ds_id, uids = clustered["ws"], clustered["dataset_id"], clustered["uids"]
    labels = clustered["labels"]
    gone = sorted(set(labels))[0]
    ws.decide(ds_id, [u for u, lab in zip(uids, labels) if lab == gone], "remove", reason="test")
    at = _open(ws)
    assert not at.exception, at.exception
    assert any(f"no row of class {gone!r}" in w.value for w in at.warning)


def test_select_page_clean_then_diversify(clustered):
    from core.valuation import significance
    from core.valuation.store import load_values

    ws = clustered["ws"]
    at = _open(ws)
    at.radio(key="select.budget_mode").set_value("count").run()
    at.number_input(key="select.count").set_value(50).run()
    at.selectbox(key="select.strategy").set_value("clean_kmq").run()
    assert not at.exception, at.exception
    assert _metric(at, "Rows in the subset") == "50"
    values = load_values(ws, clustered["values_id"])
    harmful = int((significance.classify(values) == "harmful").sum())
    text = [c.value.replace("\\", "") for c in at.caption]
    assert any(t.startswith("Clean, then diversify:") for t in text)
    if (values.counts >= 2).any():
        assert any(f"{harmful:,} rows dropped as significantly harmful" in t for t in text)
