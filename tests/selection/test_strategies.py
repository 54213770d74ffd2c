"""Selection strategies on small blobs: exact budgets in every corner, decisions honoured, determinism, refinement."""
from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from core.errors import DataError
from core.selection import (Clusters, plan_kmq, resolve_budget, select_drop_negative, select_iterative,
                            select_kmq, select_random, select_stratified, select_top_value)
from core.selection.quality import cross_fitted_proba
from core.valuation.base import Values


_JUDGES: dict[int, np.ndarray] = {}


@functools.lru_cache(maxsize=None)
def blobs(sizes=(60, 40, 20, 8), dim=6, n_classes=2, seed=0, scramble=()):
    """Well-separated blobs of the given sizes; labels follow the blob (blob % n_classes) except in `scramble`.

    Cached (callers never mutate), with the judge's cross-fitted probabilities computed once per configuration.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6.0, size=(len(sizes), dim))
    lab = np.repeat(np.arange(len(sizes)), sizes)
    X = centers[lab] + rng.normal(0, 0.5, size=(len(lab), dim))
    y = lab % n_classes
    for c in scramble:
        m = lab == c
        y[m] = rng.integers(0, n_classes, size=int(m.sum()))
    y = y.astype(np.int64)
    uids = np.array([f"u{i}" for i in range(len(lab))])
    cl = Clusters(uids=uids, labels=lab.astype(np.int64), centroids=centers.astype(np.float32), k=len(sizes))
    _JUDGES[id(cl)] = cross_fitted_proba(X, y, seed=0)
    return X, y, cl


def run(strategy, X, y, cl, **kw):
    uids = cl.uids
    values = Values(uids=uids, values=np.linspace(-1, 1, len(uids)), stderr=np.full(len(uids), np.nan),
                    counts=np.ones(len(uids), dtype=np.int64), method="test")
    budget = kw.pop("budget")
    weights = kw.pop("weights", None)
    if strategy == "random":
        return select_random(uids, budget=budget, clusters=cl, **kw)
    if strategy == "stratified":
        return select_stratified(uids, y, budget=budget, clusters=cl, **kw)
    if strategy == "top_value":
        kw.pop("seed", None)
        return select_top_value(values, budget=budget, clusters=cl, **kw)
    if strategy == "kmq":
        return select_kmq(values, cl, budget=budget, weights=weights, **kw)
    if strategy == "kmq_conf":
        return select_kmq(None, cl, budget=budget, weights=weights, y=y, judge=_JUDGES[id(cl)], **kw)
    if strategy == "iterative":
        return select_iterative(X, y, cl, budget=budget, weights=weights, n_score=10, judge=_JUDGES[id(cl)], **kw)
    raise AssertionError(strategy)


ALL = ["random", "stratified", "top_value", "kmq", "kmq_conf", "iterative"]
CLUSTERED = ["kmq", "kmq_conf", "iterative"]


def check(sel, b, *, pinned=(), removed=()):
    chosen = list(sel.uids)
    assert len(chosen) == b
    assert len(set(chosen)) == b
    assert set(pinned) <= set(chosen)
    assert not set(removed) & set(chosen)
    assert set(sel.reasons) == set(chosen)
    for u in pinned:
        assert sel.reasons[u]["why"].startswith("pinned")


@pytest.mark.parametrize("strategy", ALL)
@pytest.mark.parametrize("budget", [1, 17, 64, 0.5, "25%"])
def test_budget_exact(strategy, budget):
    X, y, cl = blobs()
    sel = run(strategy, X, y, cl, budget=budget, seed=3)
    check(sel, resolve_budget(budget, len(cl)))


@pytest.mark.parametrize("strategy", ALL)
def test_budget_equal_to_all_eligible(strategy):
    X, y, cl = blobs()
    removed = list(cl.uids[::7])
    pinned = [u for u in cl.uids[1::9] if u not in set(removed)]
    b = len(cl) - len(removed)
    sel = run(strategy, X, y, cl, budget=b, seed=0, removed=removed, pinned=pinned)
    check(sel, b, pinned=pinned, removed=removed)
    sel = run(strategy, X, y, cl, budget=1.0, seed=0, removed=removed, pinned=pinned)
    check(sel, b, pinned=pinned, removed=removed)


@pytest.mark.parametrize("strategy", ALL)
def test_removed_never_pinned_always(strategy):
    X, y, cl = blobs()
    rng = np.random.default_rng(1)
    removed = list(rng.choice(cl.uids, 30, replace=False))
    rest = [u for u in cl.uids if u not in set(removed)]
    pinned = list(rng.choice(rest, 10, replace=False))
    for b in (10, 25, 50, len(rest)):
        check(run(strategy, X, y, cl, budget=b, seed=2, removed=removed, pinned=pinned), b, pinned=pinned,
              removed=removed)


@pytest.mark.parametrize("strategy", CLUSTERED)
def test_small_cluster_shortfall_passed_on(strategy):
    X, y, cl = blobs(sizes=(60, 40, 20, 8))
    # weight 20 asks far more of the 8-row cluster than it has: it is taken whole and the rest goes elsewhere
    sel = run(strategy, X, y, cl, budget=60, seed=0, weights={3: 20.0})
    check(sel, 60)
    per = np.bincount(sel.clusters, minlength=4)
    if strategy != "iterative":
        assert per[3] == 8
    assert per.sum() == 60


@pytest.mark.parametrize("strategy", CLUSTERED)
def test_weight_zero_empties_cluster_but_keeps_its_pins(strategy):
    X, y, cl = blobs()
    pinned = [cl.uids[cl.labels == 1][0]]
    sel = run(strategy, X, y, cl, budget=50, seed=0, weights={1: 0}, pinned=pinned)
    check(sel, 50, pinned=pinned)
    assert list(sel.clusters).count(1) == 1


@pytest.mark.parametrize("strategy", CLUSTERED)
def test_pinned_over_cluster_share(strategy):
    X, y, cl = blobs(sizes=(60, 40, 20, 8))
    pinned = list(cl.uids[cl.labels == 2])  # 20 pinned rows; the cluster's share of 30 would be 4
    sel = run(strategy, X, y, cl, budget=30, seed=0, pinned=pinned)
    check(sel, 30, pinned=pinned)
    assert list(sel.clusters).count(2) == 20


def test_kmq_shares_follow_size_times_weight():
    X, y, cl = blobs(sizes=(100, 100, 100, 100))
    sel = select_kmq(None, cl, budget=100, y=y, judge=_JUDGES[id(cl)], weights={0: 2.0, 1: 0.5}, seed=0)
    per = np.bincount(sel.clusters, minlength=4)
    assert per.tolist() == [45, 11, 22, 22]  # 44.4, 11.1, 22.2, 22.2: the largest remainder gets the last row


@pytest.mark.parametrize("strategy", ALL)
def test_same_seed_same_subset(strategy):
    X, y, cl = blobs()
    a = run(strategy, X, y, cl, budget=40, seed=7)
    b = run(strategy, X, y, cl, budget=40, seed=7)
    assert list(a.uids) == list(b.uids)
    assert list(a.why) == list(b.why)
    if strategy in ("random", "stratified"):
        c = run(strategy, X, y, cl, budget=40, seed=8)
        assert set(c.uids) != set(a.uids)


def test_stratified_keeps_label_proportions():
    X, y, cl = blobs(sizes=(90, 30), n_classes=2)
    sel = select_stratified(cl.uids, y, budget=40, seed=0)
    pos = {u: i for i, u in enumerate(cl.uids)}
    counts = np.bincount(y[[pos[u] for u in sel.uids]], minlength=2)
    assert counts.tolist() == [30, 10]


def test_temperature_zero_is_top_k_and_quality_is_respected():
    X, y, cl = blobs(sizes=(50, 50))
    v = np.arange(100, dtype=float)
    sel = select_kmq(v, cl, budget=10, temperature=0.0, seed=0)
    assert sorted(sel.uids) == sorted(list(cl.uids[45:50]) + list(cl.uids[95:100]))
    hot = select_kmq(v, cl, budget=30, temperature=0.1, seed=0)
    flat = select_kmq(v, cl, budget=30, temperature=np.inf, seed=0)
    assert np.mean(hot.quality) > np.mean(flat.quality) + 0.05


def test_top_value_and_drop_negative():
    X, y, cl = blobs()
    v = np.linspace(-1, 1, len(cl))
    top = select_top_value(v, uids=cl.uids, budget=5)
    assert list(top.uids) == list(cl.uids[-5:][::-1])
    pinned = [cl.uids[0]]
    drop = select_drop_negative(v, uids=cl.uids, pinned=pinned)
    kept = set(drop.uids)
    assert kept == set(cl.uids[v >= 0]) | set(pinned)
    assert drop.strategy == "drop_negative" and len(drop) == len(kept)
    drop5 = select_drop_negative(v, uids=cl.uids, n_remove=5, removed=[cl.uids[-1]])
    assert len(drop5) == len(cl) - 1 - 5 and cl.uids[-1] not in set(drop5.uids)


def test_iterative_lowers_weight_of_scrambled_cluster():
    X, y, cl = blobs(sizes=(80, 80, 80, 80, 80, 80), n_classes=2, scramble=(2,), seed=4)
    sel = select_iterative(X, y, cl, budget=240, seed=0, judge=_JUDGES[id(cl)], reweight_temperature=1.0)
    assert len(sel) == 240
    hist = sel.history
    assert [h["round"] for h in hist] == [0, 1, 2]
    assert hist[0]["weights"] == [1.0] * 6
    final = np.asarray(hist[-1]["weights"])
    assert np.argmin(final) == 2 and final[2] < 0.5
    assert hist[1]["scores"][2] == min(hist[1]["scores"])
    assert set(sel.rounds.tolist()) == {0, 1, 2}
    per = np.bincount(sel.clusters, minlength=6)
    assert per[2] == min(per)


def test_iterative_train_fn_hook_is_used():
    X, y, cl = blobs()
    calls = []

    def train_fn(train_idx, score_idx):
        calls.append((len(train_idx), len(score_idx)))
        P = np.zeros((len(score_idx), 2))
        P[:, 0] = 1.0
        return P

    sel = select_iterative(X, y, cl, budget=30, seed=0, train_fn=train_fn, rounds=3, judge=_JUDGES[id(cl)])
    assert len(sel) == 30 and len(calls) == 2
    assert calls[0][0] == 10 and calls[1][0] == 20
    assert sel.params["train_fn"] == "train_fn"


def test_bad_input_messages():
    X, y, cl = blobs()
    with pytest.raises(DataError, match="exceeds the 118 eligible rows"):
        select_kmq(None, cl, budget=119, y=y, judge=_JUDGES[id(cl)], removed=list(cl.uids[:10]))
    with pytest.raises(DataError, match="unknown cluster id 9"):
        select_kmq(None, cl, budget=10, y=y, judge=_JUDGES[id(cl)], weights={9: 0.0})
    with pytest.raises(DataError, match="pinned rows exceed the budget"):
        select_kmq(None, cl, budget=3, y=y, judge=_JUDGES[id(cl)], pinned=list(cl.uids[:5]))
    with pytest.raises(DataError, match="weight 0"):
        select_kmq(None, cl, budget=100, y=y, judge=_JUDGES[id(cl)], weights={0: 0})
    with pytest.raises(DataError, match="both pinned and removed"):
        select_random(cl.uids, budget=3, pinned=[cl.uids[0]], removed=[cl.uids[0]])
    with pytest.raises(DataError, match="positive"):
        select_random(cl.uids, budget=0)
    with pytest.raises(DataError, match="neither a row count"):
        select_random(cl.uids, budget="lots")
    short = Values(uids=cl.uids[:-3], values=np.zeros(len(cl) - 3), stderr=np.zeros(len(cl) - 3),
                   counts=np.ones(len(cl) - 3, dtype=np.int64), method="knn_shapley")
    with pytest.raises(DataError, match="miss 3 of the 128 rows"):
        select_kmq(short, cl, budget=10)
    with pytest.raises(DataError, match="apply to kmq and iterative"):
        plan = select_random  # noqa: F841
        from core.selection import plan_random

        plan_random(cl.uids).select(5, {0: 2.0})


def test_preview_matches_select_and_diffs_last():
    X, y, cl = blobs()
    plan = plan_kmq(None, cl, y=y, judge=_JUDGES[id(cl)], seed=0, classes=["neg", "pos"])
    sel = plan.select(40, {1: 2.0})
    pv = plan.preview(40, {1: 2.0}, last=sel)
    assert pv.n == 40 and pv.added == 0 and pv.removed == 0 and pv.kept == 40
    assert pv.per_cluster == {c: int(v) for c, v in enumerate(np.bincount(sel.clusters, minlength=cl.k))}
    assert sum(pv.per_class.values()) == 40 and set(pv.per_class) == {"neg", "pos"}
    pv2 = plan.preview(50, {1: 2.0}, last=sel)
    assert pv2.n == 50 and pv2.added - pv2.removed == 10
    # a weight moved on one cluster empties it; inside every other cluster the draws stay nested
    pv3 = plan.preview(40, {1: 0.0}, last=list(sel.uids))
    assert pv3.per_cluster[1] == 0 and pv3.n == 40
    m1, m2 = plan.mask(40, {1: 2.0}), plan.mask(40, {1: 0.0})
    for c in (0, 2, 3):
        a, b = m1 & (cl.labels == c), m2 & (cl.labels == c)
        assert (a & ~b).sum() == 0 or (b & ~a).sum() == 0


def test_preview_is_fast_on_40k_rows():
    rng = np.random.default_rng(0)
    n, k = 40_000, 64
    lab = rng.integers(0, k, n)
    uids = np.array([f"r{i}" for i in range(n)])
    cl = Clusters(uids=uids, labels=lab, centroids=np.zeros((k, 4), np.float32), k=k)
    plan = plan_kmq(rng.random(n), cl, seed=0, y=rng.integers(0, 3, n), removed=list(uids[:1000]),
                    pinned=list(uids[1000:1200]))
    last = plan.select(5000)
    plan.preview(5000, last=last)
    t = time.perf_counter()
    for b in (1000, 5000, 20000):
        plan.preview(b, {3: 0.0, 5: 2.0}, last=last)
    assert (time.perf_counter() - t) / 3 < 0.2


def test_clean_kmq_drops_significantly_harmful_rows_then_keeps_kmq_shares():
    from core.selection import select_clean_kmq

    X, y, cl = blobs()
    n = len(cl.uids)
    v = np.full(n, 0.01)
    se = np.full(n, 0.001)
    harmful = np.arange(0, n, 5)  # every 5th row: significantly below 0
    v[harmful] = -0.05
    unsure = np.arange(1, n, 5)  # below 0 but not distinguishable from it
    v[unsure], se[unsure] = -0.001, 0.01
    vals = Values(uids=cl.uids, values=v, stderr=se, counts=np.full(n, 10, dtype=np.int64), method="test")
    sel = select_clean_kmq(vals, cl, budget=50, seed=0)
    check(sel, 50)
    assert not set(sel.uids) & set(cl.uids[harmful]) and sel.params["n_dropped"] == len(harmful)
    per = np.bincount(cl.labels[np.isin(cl.uids, sel.uids)], minlength=cl.k)
    share = np.bincount(cl.labels, minlength=cl.k) * 50 / n  # kMQ's shares of the uncleaned clusters
    assert np.all(np.abs(per - share) <= 1), (per, share)
    same = select_clean_kmq(vals, cl, budget=50, seed=0)
    assert same.uids.tolist() == sel.uids.tolist()
    by_count = select_clean_kmq(vals, cl, budget=50, n_remove=10, seed=0)
    lowest = cl.uids[np.lexsort((np.arange(n), v))][:10]
    assert not set(by_count.uids) & set(lowest) and by_count.params["n_dropped"] == 10
    with pytest.raises(DataError, match="clean-then-diversify"):
        select_clean_kmq(vals, cl, budget=n - len(harmful) + 1, seed=0)
