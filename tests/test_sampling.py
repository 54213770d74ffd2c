"""The one stratified sampler (core.sampling): sizes, per-class shares, tiny classes, seeds."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import sampling


def _shares(labels, idx):
    vals, counts = np.unique(np.asarray(labels)[idx], return_counts=True)
    return dict(zip(vals.tolist(), counts.tolist()))


def test_sample_has_the_size_asked_and_proportional_shares():
    y = np.array(["a"] * 900 + ["b"] * 90 + ["c"] * 10)
    idx = sampling.stratified_sample(y, 100, np.random.default_rng(0))
    assert len(idx) == 100 and len(np.unique(idx)) == 100 and np.all(np.diff(idx) > 0)
    assert _shares(y, idx) == {"a": 90, "b": 9, "c": 1}


def test_same_seed_same_rows_other_seed_other_rows():
    y = np.arange(1000) % 3
    a = sampling.stratified_sample(y, 50, np.random.default_rng(4))
    assert np.array_equal(a, sampling.stratified_sample(y, 50, np.random.default_rng(4)))
    assert not np.array_equal(a, sampling.stratified_sample(y, 50, np.random.default_rng(5)))


def test_every_class_keeps_a_row_without_exceeding_the_size():
    y = np.array([0] * 990 + [1] * 10)  # class 1's share of 50 rows is 0.5
    idx = sampling.stratified_sample(y, 50, np.random.default_rng(0))
    assert len(idx) == 50 and _shares(y, idx) == {0: 49, 1: 1}
    # fewer rows than classes: the size wins, no class is forced in
    idx = sampling.stratified_sample(np.arange(10), 3, np.random.default_rng(0))
    assert len(idx) == 3
    # pure proportions when every_class is off
    assert _shares(y, sampling.stratified_sample(y, 50, np.random.default_rng(0), every_class=False)) == {0: 50}


def test_split_leaves_every_class_a_row_and_handles_single_row_classes():
    y = np.array(["x"] * 8 + ["y"] * 2 + ["z"])  # z has one row: it can never be held out
    rest, held = sampling.stratified_split(y, 10, np.random.default_rng(0))
    assert len(held) == 8 and set(y[rest]) == {"x", "y", "z"}  # capped at all-but-one per class
    assert sorted(np.concatenate([rest, held]).tolist()) == list(range(11))
    rest, held = sampling.stratified_split(y, 0, np.random.default_rng(0))
    assert len(held) == 0 and len(rest) == 11


def test_class_quota_and_apportion_bounds():
    assert sampling.class_quota([70, 25, 5], 20).tolist() == [14, 5, 1]
    assert sampling.class_quota([3, 2, 2], 3, leave_one=True).tolist() == [1, 1, 1]
    assert sampling.class_quota([5, 5], 100).tolist() == [5, 5]  # clipped to the rows there are
    assert sampling.apportion([1.0, 1.0, 0.0], [0, 0, 2], [10, 1, 5], 6).tolist() == [3, 1, 2]
    with pytest.raises(ValueError, match="cannot apportion 12"):
        sampling.apportion([1.0, 1.0], [0, 0], [5, 5], 12)


def test_partition_covers_every_row_once_with_balanced_classes():
    y = np.array(["p"] * 41 + ["q"] * 19)
    parts = sampling.stratified_partition(y, 6, np.random.default_rng(1))
    assert sorted(np.concatenate(parts).tolist()) == list(range(60))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    for p in parts:
        assert abs((y[p] == "q").sum() - 19 / 6) <= 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 5), st.integers(0, 30)), min_size=1, max_size=12),
       st.floats(0, 1))
def test_apportion_exact_and_bounded(groups, where):
    pi = np.array([g[0] for g in groups])
    lo = np.array([g[1] for g in groups])
    hi = lo + np.array([g[2] for g in groups])
    cap = np.where(pi > 0, hi, lo)
    total = int(lo.sum() + round(where * (cap.sum() - lo.sum())))
    x = sampling.apportion(pi, lo, hi, total)
    assert x.sum() == total and np.all(x >= lo) and np.all(x <= cap)
    # proportional where unconstrained: two free groups never differ by more than their shares allow
    free = (x > lo) & (x < cap) & (pi > 0)
    if free.sum() >= 2:
        with np.errstate(over="ignore"):
            ratio = x[free] / pi[free]
            assert ratio.max() - ratio.min() <= 2.0 / pi[free].min() * (1 + 1e-9)


def test_every_prefix_of_the_stratified_order_is_stratified():
    """Work cut short by a clock (the first run's time-boxed sample) still leaves a stratified sample behind."""
    labels = np.array(["neg"] * 600 + ["neu"] * 300 + ["pos"] * 95 + ["rare"] * 5)
    order = sampling.stratified_order(labels, np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(len(labels)))  # a permutation
    assert np.array_equal(order, sampling.stratified_order(labels, np.random.default_rng(3)))
    assert not np.array_equal(order, sampling.stratified_order(labels, np.random.default_rng(4)))
    for m in range(1, len(labels) + 1):
        got = _shares(labels, order[:m])
        for c, n_c in zip(("neg", "neu", "pos", "rare"), (600, 300, 95, 5)):
            assert abs(got.get(c, 0) - m * n_c / len(labels)) <= 2, (m, c)
    assert _shares(labels, order[:200])["rare"] == 1  # a 0.5 % class shows up once its share reaches one row
