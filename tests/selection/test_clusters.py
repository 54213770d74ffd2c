"""k-means clusters and their summaries."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.selection import Clusters, fit_clusters, summaries_table, summarize_clusters
from core.valuation.base import Values


def four_blobs(n_per=(50, 40, 30, 20), dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.eye(dim)[:4] * 5.0
    lab = np.repeat(np.arange(4), n_per)
    X = centers[lab] + rng.normal(0, 0.3, size=(len(lab), dim))
    return X, lab


def test_silhouette_picks_the_true_k_and_ids_are_sorted_by_size():
    X, true = four_blobs()
    cl = fit_clusters(X, k_grid=(2, 4, 8), seed=0)
    assert cl.k == 4 and set(cl.silhouette) == {2, 4, 8}
    assert max(cl.silhouette, key=cl.silhouette.get) == 4
    assert cl.sizes.tolist() == [50, 40, 30, 20]
    # the clusters recover the blobs exactly (up to naming)
    for c in range(4):
        assert len(set(true[cl.labels == c])) == 1
    assert cl.centroids.shape == (4, 16) and len(cl.uids) == len(X)


def test_same_seed_same_clusters_and_given_k():
    X, _ = four_blobs()
    a = fit_clusters(X, k=3, seed=1)
    b = fit_clusters(X, k=3, seed=1)
    assert a.k == 3 and np.array_equal(a.labels, b.labels) and list(a.silhouette) == [3]


def test_budget_caps_k():
    X, _ = four_blobs(n_per=(100, 100, 100, 100))
    cl = fit_clusters(X, k_grid=(4, 8, 16, 32), budget=100, seed=0)
    assert max(cl.silhouette) <= 10


def test_sample_and_minibatch_path():
    X, true = four_blobs(n_per=(300, 300, 200, 200))
    cl = fit_clusters(X, k_grid=(2, 4), seed=0, sample_size=300, minibatch_above=500, uids=[f"r{i}" for i in
                                                                                             range(len(X))])
    assert cl.method == "minibatch" and cl.k == 4
    for c in range(4):
        assert np.mean(true[cl.labels == c] == np.bincount(true[cl.labels == c]).argmax()) > 0.99
    assert cl.uids[0] == "r0"


def test_bad_k():
    X, _ = four_blobs()
    with pytest.raises(DataError, match="not between 2"):
        fit_clusters(X, k=1000)
    with pytest.raises(DataError, match="at least 4 rows"):
        fit_clusters(X[:3])


def test_summaries_name_the_right_top_words():
    cats = ["the cat sat on the mat", "my cat chases a mouse", "cats purr and a cat naps", "a kitten and a cat",
            "the cat meows at the mouse"]
    cars = ["the car needs fuel", "my car engine broke", "cars and the engine", "a fast car on the road",
            "the road and the car"]
    texts = cats + cars
    labels = ["pos", "pos", "neg", "pos", "neg", "neg", "neg", "neg", "pos", "neg"]
    lab = np.array([0] * 5 + [1] * 5)
    X = np.vstack([np.tile([1.0, 0.0], (5, 1)), np.tile([0.0, 1.0], (5, 1))]) + 0.01 * np.arange(10)[:, None]
    uids = np.array([f"t{i}" for i in range(10)])
    cl = Clusters(uids=uids, labels=lab, centroids=np.eye(2, dtype=np.float32), k=2)
    vals = np.array([0.5, 0.2, -0.1, 0.3, 0.1, -0.5, -0.2, 0.1, -0.3, -0.4])
    summ = summarize_clusters(cl, texts, labels, X, vals)
    assert summ[0]["top_words"][0] == "cat" and summ[1]["top_words"][0] == "car"
    assert summ[0]["name"].startswith("cat") and summ[1]["name"].startswith("car")
    assert "the" not in summ[0]["top_words"]  # English stop words
    assert summ[0]["label_counts"] == {"neg": 2, "pos": 3} and summ[0]["majority"] == "pos"
    assert summ[1]["share_negative"] == pytest.approx(0.8)
    assert summ[0]["value_mean"] == pytest.approx(vals[:5].mean())
    assert summ[0]["value_std"] == pytest.approx(vals[:5].std())
    assert len(summ[0]["examples"]) == 5 and summ[0]["examples"][0]["uid"] == "t0"
    rows = summaries_table(summ)
    assert rows[0]["label mix"] == "pos 60%, neg 40%" and rows[1]["top words"].startswith("car")
    # values as a run, aligned by uid; without values the value fields are empty
    run = Values(uids=uids[::-1], values=vals[::-1], stderr=np.zeros(10), counts=np.ones(10, dtype=np.int64),
                 method="x")
    assert summarize_clusters(cl, texts, labels, X, run)[1]["value_mean"] == pytest.approx(vals[5:].mean())
    assert summarize_clusters(cl, texts, labels, X)[0]["value_mean"] is None


def test_auto_k_grows_with_the_data_and_the_reason_is_recorded(ws):
    from core.selection.clusters import auto_k_grid, k_reason
    from core.selection.store import save_clusters

    assert auto_k_grid(38_158) == (32, 64, 128)  # the demo: k = 4 was too coarse for per-cluster weights
    assert auto_k_grid(2_000) == (8, 16, 32) and auto_k_grid(300) == (4, 8, 16)
    assert auto_k_grid(196_000)[0] >= 64
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8))
    cl = fit_clusters(X, seed=0)
    assert set(cl.silhouette) == {4, 8, 16} and cl.k in (4, 8, 16)
    reason = k_reason(cl)
    assert reason.startswith(f"k = {cl.k}: the best cosine silhouette") and "growing with the rows" in reason
    ds = ws.register_dataset(name="t", source="t", fingerprint="fp", n_rows=400, classes=["a"])
    rid = save_clusters(ws, ds, cl)
    assert ws.run(rid).result["k_reason"] == reason
    assert k_reason(fit_clusters(X, k=5, seed=0)) == "k = 5: set by the user"
