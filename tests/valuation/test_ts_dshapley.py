"""TS-DShapley: flipped rows rank low, determinism, shapes, exact incremental fits, truncation, resume, errors."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.valuation import Split, ts_dshapley
from core.valuation.source import ridge_utility, source_features
from core.valuation.tmc import run_chains
from core.valuation.ts_dshapley import stratified_partition

FAST = dict(n_passes=4, n_permutations=4, subset_size=50, n_jobs=1)


def test_flipped_rows_rank_low(blobs, auc):
    train, valid, flipped = blobs
    v = ts_dshapley(train, valid=valid, seed=0, **FAST)
    assert auc(v.values, flipped) > 0.85
    assert v.values[flipped].mean() < 0 < v.values[~flipped].mean()


def test_binary_fast_path_ranks_flipped_low(binary_blobs, auc):
    train, valid, flipped = binary_blobs
    v = ts_dshapley(train, valid=valid, seed=1, **FAST)
    assert auc(v.values, flipped) > 0.75


def test_same_seed_same_values_and_shapes(blobs):
    train, valid, _ = blobs
    a = ts_dshapley(train, valid=valid, seed=3, **FAST)
    b = ts_dshapley(train, valid=valid, seed=3, **FAST)
    c = ts_dshapley(train, valid=valid, seed=4, **FAST)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    n = len(train)
    assert a.values.shape == a.stderr.shape == a.counts.shape == (n,)
    assert (a.counts == FAST["n_passes"]).all()  # every row valued once per pass
    assert np.isfinite(a.stderr).all() and (a.stderr >= 0).all()
    assert list(a.uids) == list(train.uids)
    assert a.method == "ts_dshapley" and a.params["seed"] == 3 and a.params["n_passes"] == 4
    assert a.extra == {}


def test_seed_none_is_recorded_and_reproduces(blobs):
    train, valid, _ = blobs
    a = ts_dshapley(train, valid=valid, seed=None, **FAST)
    b = ts_dshapley(train, valid=valid, seed=a.params["seed"], **FAST)
    np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("n_classes,utility", [(2, "accuracy"), (3, "accuracy"), (2, "neg_mse"),
                                               (3, "log_likelihood")])
def test_incremental_ridge_equals_refitting_every_prefix(n_classes, utility):
    rng = np.random.default_rng(n_classes)
    n = 25
    Z, y = rng.normal(size=(n, 4)), rng.integers(0, n_classes, n)
    Zv, yv = rng.normal(size=(30, 4)), np.arange(30) % n_classes
    orders = np.stack([rng.permutation(n) for _ in range(3)])
    marg = run_chains(Z, y, Zv, yv, orders, np.zeros(3), n_classes=n_classes, utility=utility, alpha=2.0,
                      tolerance=0.0)
    for c in range(3):
        prev = ridge_utility(Z[:0], y[:0], Zv, yv, n_classes=n_classes, alpha=2.0, utility=utility)
        for t in range(n):
            v = ridge_utility(Z[orders[c, :t + 1]], y[orders[c, :t + 1]], Zv, yv, n_classes=n_classes, alpha=2.0,
                              utility=utility)
            assert marg[c, t] == pytest.approx(v - prev, abs=1e-9)
            prev = v


def test_truncation_matches_a_sequential_reference():
    rng = np.random.default_rng(7)
    n = 40
    Z, y = rng.normal(size=(n, 3)), rng.integers(0, 2, n)
    Zv, yv = rng.normal(size=(50, 3)) + 0.0, rng.integers(0, 2, 50)
    Z[:, 0] += 2 * y
    Zv[:, 0] += 2 * yv
    orders = np.stack([rng.permutation(n) for _ in range(6)])
    v_full = ridge_utility(Z, y, Zv, yv, n_classes=2)
    tol, min_steps = 0.05, 4
    marg = run_chains(Z, y, Zv, yv, orders, np.full(6, v_full), n_classes=2, tolerance=tol, min_steps=min_steps)
    for c in range(6):
        prev = ridge_utility(Z[:0], y[:0], Zv, yv, n_classes=2)
        expect = np.zeros(n)
        for t in range(n):
            v = ridge_utility(Z[orders[c, :t + 1]], y[orders[c, :t + 1]], Zv, yv, n_classes=2)
            expect[t] = v - prev
            prev = v
            if t + 1 >= min_steps and t + 1 < n and abs(v_full - v) < tol:
                break
        np.testing.assert_allclose(marg[c], expect, atol=1e-12)
    assert (marg[:, -5:] == 0).any()  # some permutation was truncated


def test_padding_rows_are_no_ops():
    rng = np.random.default_rng(1)
    Z, y = rng.normal(size=(10, 3)), np.arange(10) % 2
    Zv, yv = rng.normal(size=(8, 3)), np.arange(8) % 2
    order = rng.permutation(10)
    a = run_chains(Z, y, Zv, yv, order[None, :], np.zeros(1), n_classes=2, tolerance=0)
    padded = np.concatenate([order, [-1, -1]])[None, :]
    b = run_chains(Z, y, Zv, yv, padded, np.zeros(1), n_classes=2, tolerance=0)
    np.testing.assert_array_equal(a[0], b[0, :10])
    assert (b[0, 10:] == 0).all()


def test_partition_is_stratified_with_sizes_within_one():
    y = np.array([0] * 53 + [1] * 30 + [2] * 17)
    parts = stratified_partition(y, 7, np.random.default_rng(0))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 100
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    for p in parts:
        counts = np.bincount(y[p], minlength=3)
        assert (np.abs(counts - np.bincount(y) / 7) <= 1).all()


def test_source_features_fit_on_train_only():
    rng = np.random.default_rng(0)
    X, Xv = rng.normal(size=(100, 50)), rng.normal(size=(20, 50)) + 5
    Z, Zv = source_features(X, Xv, n_components=8)
    assert Z.shape == (100, 8) and Zv.shape == (20, 8)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(Z.std(0), 1, atol=1e-9)


def test_centering_and_smooth_utility_and_logistic_options(blobs, auc):
    train, valid, flipped = blobs
    v = ts_dshapley(train, valid=valid, seed=0, center=True, utility="neg_mse", **FAST)
    assert abs(v.values.mean()) < 1e-9  # each subset's estimates sum to 0
    assert auc(v.values, flipped) > 0.7
    small = train.take(np.arange(36))
    lg = ts_dshapley(small, valid=valid, seed=0, classifier="logistic", n_passes=1, n_permutations=1,
                     subset_size=36, n_jobs=1)
    assert np.isfinite(lg.values).all() and lg.params["classifier"] == "logistic"


def test_killed_run_resumes_without_redoing_finished_subsets(blobs):
    train, valid, _ = blobs
    opts = dict(n_passes=6, n_permutations=3, subset_size=40, n_jobs=1)  # 6 tasks: one per pass
    full = ts_dshapley(train, valid=valid, seed=5, **opts)
    saved = []

    class Killed(Exception):
        pass

    def die_after_two(fraction, message, partial):
        if partial is not None:
            saved.append(partial)
            if len(saved) == 2:
                raise Killed()

    with pytest.raises(Killed):
        ts_dshapley(train, valid=valid, seed=5, on_progress=die_after_two, **opts)
    checkpoint = saved[-1]
    assert (checkpoint.counts == 2).all()
    assert {k for k in checkpoint.extra if k.startswith("pass_")} == {f"pass_{k}" for k in range(6)}
    recomputed = []
    resumed = ts_dshapley(train, valid=valid, seed=5, continue_from=checkpoint,
                          on_progress=lambda f, m, p: recomputed.append(p) if p is not None else None, **opts)
    assert len(recomputed) == 4  # only the four unfinished tasks ran
    np.testing.assert_array_equal(resumed.values, full.values)
    np.testing.assert_array_equal(resumed.stderr, full.stderr)
    with pytest.raises(DataError, match="different options"):
        ts_dshapley(train, valid=valid, seed=6, continue_from=checkpoint, **opts)


def test_worker_count_does_not_change_values(blobs):
    train, valid, _ = blobs
    opts = dict(n_passes=4, n_permutations=3, subset_size=50, seed=2)
    one = ts_dshapley(train, valid=valid, n_jobs=1, **opts)
    two = ts_dshapley(train, valid=valid, n_jobs=2, **opts)
    np.testing.assert_array_equal(one.values, two.values)


def test_bad_inputs_give_clear_errors(blobs):
    train, valid, _ = blobs
    X = train.X.copy()
    X[5, 2] = np.nan
    with pytest.raises(DataError, match=r"NaN .* 1 row\(s\) \(first uid: r5\)"):
        ts_dshapley(Split(train.uids, X, train.y), valid=valid, **FAST)
    two = valid.take(np.flatnonzero(valid.y < 2))
    with pytest.raises(DataError, match="missing from the validation"):
        ts_dshapley(train, valid=two, **FAST)
    with pytest.raises(DataError, match="not in the training rows"):
        ts_dshapley(train.take(np.flatnonzero(train.y < 2)), valid=valid, **FAST)
    rare = np.flatnonzero(train.y == 2)[:3]
    keep = np.concatenate([np.flatnonzero(train.y < 2), rare])
    with pytest.raises(DataError, match=r"has 3 training row\(s\), fewer than the \d+ subsets .*--subset-size"):
        ts_dshapley(train.take(keep), valid=valid, n_passes=1, subset_size=20, n_jobs=1)


def test_past_the_small_size_partials_are_spaced_out_and_the_last_always_comes(blobs, monkeypatch):
    """A partial costs rows x passes to build (seconds at 1M rows): past the small size, on_progress hears of every
    task but gets a partial only every so often, and always after the last task. Values are the same."""
    import importlib

    ts = importlib.import_module("core.valuation.ts_dshapley")
    train, valid, _ = blobs
    opts = dict(n_passes=6, n_permutations=3, subset_size=40, n_jobs=1, seed=5)  # 6 tasks
    every_task = []
    full = ts_dshapley(train, valid=valid, on_progress=lambda f, m, p: every_task.append(p), **opts)
    assert len(every_task) == 7 and all(p is not None for p in every_task[1:])  # small data: one per task
    monkeypatch.setattr(ts, "_PARTIAL_ALWAYS", 0)
    monkeypatch.setattr(ts, "_PARTIAL_EVERY", 1e9)
    calls = []
    spaced = ts_dshapley(train, valid=valid, on_progress=lambda f, m, p: calls.append((f, p)), **opts)
    assert [f for f, _ in calls] == [i / 6 for i in range(7)]  # the start, then every task is still reported
    assert [p is not None for _, p in calls] == [False] * 6 + [True]  # the last task's partial only
    np.testing.assert_array_equal(calls[-1][1].values, full.values)
    np.testing.assert_array_equal(spaced.values, full.values)


def test_a_task_reads_only_its_own_rows(blobs):
    """A task's chains run on its subsets' rows alone: rows outside the task (here NaN) change nothing, so a task
    costs what its rows cost at any data size."""
    import importlib

    ts = importlib.import_module("core.valuation.ts_dshapley")
    train, valid, _ = blobs
    Z, Zv = source_features(train.X, valid.X, n_components=4)
    opts = dict(n_classes=3, classifier="ridge", utility="accuracy", ridge_alpha=10.0, C=1.0, tolerance=0.02,
                subset_size=40, center=False, n_permutations=64)
    task = ts._make_tasks(train.y, 5, 1, 64, entropy=7)[0]  # 4 subsets a task (256 chains): 160 of the 200 rows
    k, rows, est = ts._run_task(task, Z, train.y, Zv, valid.y, opts, 7)
    outside = np.setdiff1d(np.arange(len(Z)), rows)
    assert len(outside) > 0
    Z_nan = Z.copy()
    Z_nan[outside] = np.nan
    k2, rows2, est2 = ts._run_task(task, Z_nan, train.y, Zv, valid.y, opts, 7)
    assert k2 == k and np.array_equal(rows2, rows) and np.isfinite(est).all()
    np.testing.assert_array_equal(est2, est)
