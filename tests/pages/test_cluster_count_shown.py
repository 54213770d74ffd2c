"""Clusters serve curation (issue 17): the map colours by cluster with the clusters' names in a categorical legend,
and the Map and Select pages say why the chosen k was chosen (a range of k that grows with the rows)."""
from __future__ import annotations

import html
import json

import numpy as np
import pytest

pytest.importorskip("streamlit.testing.v1")


@pytest.fixture
def auto_clustered(demo_ws):
    """The demo workspace with clusters fitted as the `cluster` step fits them (auto k), with their summaries."""
    from core.selection import fit_clusters, summarize_clusters
    from core.selection.store import save_clusters

    ws, ds_id = demo_ws["ws"], demo_ws["dataset_id"]
    emb = ws.embeddings(ds_id)[0]
    X = np.asarray(ws.read_array(emb.relpath), dtype=np.float32)
    cl = fit_clusters(X, seed=0, uids=demo_ws["uids"])
    summ = summarize_clusters(cl, demo_ws["texts"], demo_ws["labels"], X, None, classes=ws.dataset(ds_id).classes)
    run = save_clusters(ws, ds_id, cl, embedding_id=emb.id, summaries=summ)
    return dict(demo_ws, clusters=cl, summaries=summ, clusters_run=run)


def test_colour_by_cluster_names_each_cluster_in_a_legend_and_says_why_k(app, auto_clustered):
    ws, cl = auto_clustered["ws"], auto_clustered["clusters"]
    reason = ws.run(auto_clustered["clusters_run"]).result["k_reason"]
    assert reason.startswith(f"k = {cl.k}: the best cosine silhouette") and "growing with the rows" in reason
    app.switch_page("pages/3_Map.py").run()
    app.radio(key="map.colour").set_value("cluster").run()
    assert not app.exception, app.exception
    fig = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert not fig["data"][0]["marker"].get("showscale")  # no numeric colour bar
    notes = [a["text"] for a in fig["layout"]["annotations"]]
    assert notes[0] == "<b>cluster</b>"
    names = {int(s["cluster"]): s["name"] for s in auto_clustered["summaries"]}
    legend = [html.unescape(t.split("</span> ", 1)[1]) for t in notes[1:]]
    assert len(legend) == len(names) == cl.k
    for c, shown in zip(sorted(names), legend):  # "3: apple / deflategate / …" (long names are shortened)
        assert shown.startswith(f"{c}: ") and f"{c}: {names[c]}".startswith(shown.rstrip("…").rstrip())
    captions = [c.value.replace("\\", "") for c in app.caption]
    assert reason in captions

    app.switch_page("pages/5_Select.py").run()
    assert not app.exception, app.exception
    assert reason in [c.value.replace("\\", "") for c in app.caption]
