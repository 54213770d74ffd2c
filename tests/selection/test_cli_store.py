"""Clusters and subsets in the workspace, and the `cluster` / `select` commands end to end (fake embeddings)."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from core.errors import DataError, WorkspaceError
from core.selection import fit_clusters, select_iterative, select_kmq
from core.selection.store import (find_clusters, judge_proba, last_selection, load_clusters, load_selection,
                                  save_clusters, save_selection)

TOPICS = {"cats": ["cat", "kitten", "purr", "whiskers"], "cars": ["car", "engine", "road", "fuel"],
          "food": ["pizza", "pasta", "cheese", "sauce"], "rain": ["rain", "cloud", "storm", "umbrella"]}


def _fake_vec(text: str, dim: int = 32) -> np.ndarray:
    v = np.zeros(dim)
    for w in text.split():
        v[int(hashlib.md5(w.encode()).hexdigest(), 16) % dim] += 1.0
    return v / max(np.linalg.norm(v), 1e-9)


@pytest.fixture
def csv_data(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for t, words in TOPICS.items():
        for i in range(30):
            text = " ".join(rng.choice(words, 4)) + f" {t} number{i}"
            label = "pos" if (i % 3) else "neg"
            rows.append({"text": text, "label": label})
    path = tmp_path / "toy.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def fake_embeddings(monkeypatch):
    from core.cli import common

    def get_embeddings(args, ws, loaded, on_progress=None):
        X = np.vstack([_fake_vec(t) for t in loaded.ds["text"]]).astype(np.float32)
        emb = ws.register_embedding(dataset_id=loaded.dataset_id, model="fake", dim=X.shape[1], n_rows=len(X),
                                    relpath="fake.npy")
        return emb, X

    monkeypatch.setattr(common, "get_embeddings", get_embeddings)


def cli(ws, *argv):
    from core.__main__ import main

    return main(["--workspace", str(ws.path), *argv])


def test_clusters_and_selection_round_trip(ws):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 8))
    y = rng.integers(0, 2, 80)
    uids = [f"r{i}" for i in range(80)]
    cl = fit_clusters(X, k=4, seed=0, uids=uids)
    ds = ws.register_dataset(name="t", source="t", fingerprint="fp", n_rows=80, classes=["a", "b"])
    emb = ws.register_embedding(dataset_id=ds, model="m", dim=8, n_rows=80, relpath="e.npy")
    other = ws.register_embedding(dataset_id=ds, model="m2", dim=8, n_rows=80, relpath="e2.npy")
    rid = save_clusters(ws, ds, cl, embedding_id=emb, summaries=[{"cluster": 0}])
    back = load_clusters(ws, rid)
    assert np.array_equal(back.labels, cl.labels) and np.allclose(back.centroids, cl.centroids)
    assert back.k == 4 and back.silhouette == cl.silhouette and list(back.uids) == uids
    assert find_clusters(ws, ds, embedding_id=emb, k=4, seed=0).id == rid
    assert find_clusters(ws, ds, embedding_id=emb, k=None, seed=0) is None
    assert find_clusters(ws, ds, embedding_id=other, k=4, seed=0) is None
    run = ws.run(rid)
    assert run.kind == "clusters" and run.params["embedding_id"] == emb and run.params["k"] == 4

    sel = select_iterative(X, y, cl, budget=30, seed=0, weights={1: 2.0}, pinned=["r0"])
    sid = save_selection(ws, ds, sel, embedding_id=emb, clusters_run_id=rid)
    got = load_selection(ws, sid)
    assert list(got.uids) == list(sel.uids) and got.reasons == sel.reasons and got.history == sel.history
    assert got.strategy == "iterative" and ws.run(sid).params["weights"] == {"1": 2.0}
    assert ws.run(sid).params["clusters_run_id"] == rid
    frame = ws.load_run_frame(sid)
    assert list(frame.columns[:3]) == ["uid", "cluster", "reason"]
    assert last_selection(ws, ds).uids.tolist() == sel.uids.tolist()
    assert last_selection(ws, ds + 1) is None
    with pytest.raises(WorkspaceError, match="not a saved subset"):
        load_selection(ws, rid)


def test_judge_is_cached_by_embedding_and_labels(ws):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 4))
    y = rng.integers(0, 2, 40)
    P = judge_proba(ws, X, y, n_classes=2, embedding_id=5)
    assert P.shape == (40, 2) and np.allclose(P.sum(1), 1)
    assert np.array_equal(judge_proba(ws, X * 0, y, n_classes=2, embedding_id=5), P)  # from the cache
    assert not np.array_equal(judge_proba(ws, X, 1 - y, n_classes=2, embedding_id=5), P)
    assert not np.array_equal(judge_proba(ws, X * 0, y, n_classes=2, embedding_id=6), P)


def test_cli_cluster_and_select_honour_decisions(ws, csv_data, fake_embeddings, tmp_path, capsys):
    assert cli(ws, "cluster", str(csv_data), "--k", "4") == 0
    out = capsys.readouterr().out
    assert "4 clusters" in out and "| cluster | name" in out
    ds_id = ws.latest_run("clusters").dataset_id
    frame = ws.load_run_frame(ws.latest_run("clusters").id)
    uids = frame["uid"].tolist()
    ws.decide(ds_id, uids[:10], "remove")
    ws.decide(ds_id, uids[10:15], "keep")
    sub = tmp_path / "subset.csv"
    assert cli(ws, "select", str(csv_data), "--strategy", "kmq", "--budget", "40", "--k", "4",
               "--weights", "0=0,1=2", "--out", str(sub)) == 0
    got = pd.read_csv(sub)
    assert list(got.columns) == ["uid", "cluster", "reason"] and len(got) == 40
    assert not set(uids[:10]) & set(got.uid) and set(uids[10:15]) <= set(got.uid)
    assert (got.cluster == 0).sum() == sum(1 for u in uids[10:15] if frame.set_index("uid").cluster[u] == 0)
    run = ws.latest_run("selection")
    assert run.params["weights"] == {"0": 0.0, "1": 2.0} and run.params["budget"] == 40
    assert cli(ws, "select", str(csv_data), "--strategy", "iterative", "--budget", "0.5", "--k", "4",
               "--out", str(sub)) == 0
    got = pd.read_csv(sub)
    assert len(got) == 55 and not set(uids[:10]) & set(got.uid)  # half of the 110 rows not removed
    assert "vs subset before" in capsys.readouterr().out
    assert cli(ws, "select", str(csv_data), "--strategy", "random", "--budget", "20", "--dry-run") == 0


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "kmq", "--budget", "500"], "exceeds the 120 eligible rows"),
    (["--strategy", "kmq", "--budget", "10", "--weights", "9=0"], "unknown cluster id 9"),
    (["--strategy", "kmq", "--budget", "10", "--weights", "x"], "is not CLUSTER=WEIGHT"),
    (["--strategy", "random", "--budget", "10", "--weights", "1=0"], "applies to --strategy kmq or iterative"),
    (["--strategy", "top-value", "--budget", "10", "--no-values"], "needs values"),
    (["--strategy", "kmq", "--budget", "10", "--values", "VALUES"], "miss 119 of the 120 rows"),
    (["--strategy", "kmq", "--budget", "10", "--values", "BADVALUES"], "uids that the data lacks"),
])
def test_cli_bad_input_is_one_line_exit_2(ws, csv_data, fake_embeddings, tmp_path, capsys, argv, message):
    assert cli(ws, "cluster", str(csv_data), "--k", "4") == 0
    uids = ws.load_run_frame(ws.latest_run("clusters").id)["uid"].tolist()
    pd.DataFrame({"uid": uids[:1], "value": [0.1]}).to_csv(tmp_path / "v.csv", index=False)
    pd.DataFrame({"uid": uids + ["ghost"], "value": np.zeros(121)}).to_csv(tmp_path / "bad.csv", index=False)
    argv = [str(tmp_path / "v.csv") if a == "VALUES" else str(tmp_path / "bad.csv") if a == "BADVALUES" else a
            for a in argv]
    capsys.readouterr()
    rc = cli(ws, "select", str(csv_data), "--k", "4", *argv, "--out", str(tmp_path / "s.csv"))
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert rc == 2 and len(err) == 1 and err[0].startswith("winnow: error:") and message in err[0], err


def test_parse_weights():
    from core.cli.select import parse_weights

    assert parse_weights("3=0, 5=2.5,") == {3: 0.0, 5: 2.5}
    assert parse_weights(None) == {}
    with pytest.raises(DataError):
        parse_weights("3:1")


def test_select_kmq_fraction_of_eligible(ws):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 4))
    cl = fit_clusters(X, k=3, seed=0)
    sel = select_kmq(rng.random(50), cl, budget=0.2, removed=list(cl.uids[:10]))
    assert len(sel) == 8


def test_cli_select_clean_kmq_drops_significantly_harmful_rows(ws, csv_data, fake_embeddings, tmp_path, capsys):
    assert cli(ws, "cluster", str(csv_data), "--k", "4") == 0
    uids = ws.load_run_frame(ws.latest_run("clusters").id)["uid"].tolist()
    v = np.full(len(uids), 0.01)
    v[:12] = -0.05  # significantly harmful: interval -0.05 ± 0.002
    v[12:24] = -0.001  # below 0 but not distinguishable from 0
    se = np.where(np.arange(len(uids)) < 12, 0.001, 0.01)
    pd.DataFrame({"uid": uids, "value": v, "stderr": se, "count": 10}).to_csv(tmp_path / "v.csv", index=False)
    sub = tmp_path / "s.csv"
    assert cli(ws, "select", str(csv_data), "--strategy", "clean-kmq", "--budget", "60", "--k", "4",
               "--values", str(tmp_path / "v.csv"), "--out", str(sub)) == 0
    got = pd.read_csv(sub)
    assert len(got) == 60 and not set(uids[:12]) & set(got.uid)
    assert got.reason.str.startswith("clean-kmq: cluster").all()
    run = ws.latest_run("selection")
    assert run.method == "clean_kmq" and run.params["n_dropped"] == 12
    assert cli(ws, "select", str(csv_data), "--strategy", "clean-kmq", "--budget", "60", "--k", "4",
               "--values", str(tmp_path / "v.csv"), "--remove-count", "30", "--out", str(sub)) == 0
    assert not set(uids[:24]) & set(pd.read_csv(sub).uid)  # the 30 lowest values dropped instead


def test_ensure_clusters_reuses_what_fits_and_summaries_follow_the_values_run(ws):
    from core.selection import cluster_summaries, ensure_clusters

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 6))
    uids = [f"r{i}" for i in range(60)]
    ds = ws.register_dataset(name="t", source="t", fingerprint="fp-ensure", n_rows=60, classes=["a", "b"])
    emb = ws.register_embedding(dataset_id=ds, model="m", dim=6, n_rows=60, relpath="e.npy")
    rid, cl, fitted = ensure_clusters(ws, ds, X, uids, embedding_id=emb, k=3, seed=0)
    assert fitted and ws.run(rid).kind == "clusters" and cl.k == 3
    again, cl2, fitted2 = ensure_clusters(ws, ds, X, uids, embedding_id=emb, k=3, seed=0)
    assert again == rid and not fitted2 and np.array_equal(cl2.labels, cl.labels)
    other, _, fitted3 = ensure_clusters(ws, ds, X, uids[::-1], embedding_id=emb, k=3, seed=0)  # other rows: refit
    assert other != rid and fitted3
    refit, _, fitted4 = ensure_clusters(ws, ds, X, uids, embedding_id=emb, k=3, seed=0, refit=True)
    assert refit not in (rid, other) and fitted4

    texts, labels = [f"text {i}" for i in range(60)], ["a", "b"] * 30
    first = cluster_summaries(ws, rid, cl, texts=texts, labels=labels, X=X, values=None, values_run_id=None,
                              classes=["a", "b"])
    assert len(first) == 3 and ws.run(rid).result["summaries"] == first
    # stored summaries are reused while the values run is the same one; another values run recomputes them
    assert cluster_summaries(ws, rid, cl, texts=["x"] * 60, labels=labels, X=X, values=None, values_run_id=None,
                             classes=["a", "b"]) == first
    other_values = cluster_summaries(ws, rid, cl, texts=["x"] * 60, labels=labels, X=X, values=None,
                                     values_run_id=99, classes=["a", "b"])
    assert other_values != first and ws.run(rid).result["values_run_id"] == 99


def test_removal_count_one_rule_for_drop_negative_and_clean_kmq(ws):
    from core.selection import removal_count
    from core.valuation.base import Values

    ds = ws.register_dataset(name="t", source="t", fingerprint="fp-removal", n_rows=4, classes=["a", "b"])
    rid = ws.create_run("values", dataset_id=ds, method="knn_shapley", params={})
    ws.update_run(rid, status="done", result={"suggested_removal": 2})
    run = ws.run(rid)
    u = np.array(["a", "b", "c", "d"])
    with_err = Values(uids=u, values=np.zeros(4), stderr=np.full(4, 0.1), counts=np.full(4, 5), method="m")
    without = Values(uids=u, values=np.zeros(4), stderr=np.full(4, np.nan), counts=np.ones(4, np.int64), method="m")
    assert removal_count("drop_negative", with_err, run) == 2  # the run's suggestion
    assert removal_count("clean-kmq", with_err, run) is None  # standard errors: the significantly harmful rows
    assert removal_count("clean_kmq", without, run) == 2  # no standard errors: the suggestion is all there is
    assert removal_count("clean_kmq", with_err, run, given=3) == 3 and removal_count("drop_negative", None, None) is None
