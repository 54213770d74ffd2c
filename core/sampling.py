"""Class-stratified sampling: the one place that decides how many rows each class gives, and which.

Every stratified draw in Winnow goes through here: the validation hold-out and its reductions
(`core.valuation.validation`), the passes of TS-DShapley (`stratified_partition`), the map's fitting sample
(`core.projection`), the first run's preliminary sample (`core.first_run`), `--limit` (`core.data`), the fine-tuning
validation split and the comparison's test set and pool cap (`core.finetune`, `core.experiment`), and the label
shares of the stratified selection strategy (`apportion`).

Why not scikit-learn's `train_test_split(stratify=...)` / `StratifiedShuffleSplit`: they refuse a class with a
single row and a sample smaller than the number of classes, and they cannot promise that every class keeps a row
(in the sample, or left behind). Curation data has such tiny classes, so the per-class counts are computed here:
largest-remainder shares of the class sizes, with bounds, by exact water-filling (`apportion`), so the sample has
exactly the size asked for whenever the bounds allow it. Rows inside a class are a seeded random permutation.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["apportion", "class_codes", "class_quota", "stratified_order", "stratified_partition",
           "stratified_sample", "stratified_split"]


def apportion(weights: NDArray[np.floating] | Sequence[float], lo: NDArray[np.integer] | Sequence[int],
              hi: NDArray[np.integer] | Sequence[int], total: int) -> NDArray[np.int64]:
    """Integers lo <= x <= hi summing to `total`, proportional to `weights` where the bounds allow.

    Exact water-filling with largest-remainder rounding: a group whose share exceeds its `hi` is capped and its
    shortfall passed on; a group below its `lo` is raised to it. Groups with weight 0 get `lo`. Ties in the
    remainders go to the larger weight, then to the earlier group.

    Raises:
        ValueError: If sum(lo) > total or total > sum of the caps (hi, or lo where the weight is 0).
    """
    pi = np.asarray(weights, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.int64)
    cap = np.where(pi > 0, np.asarray(hi, dtype=np.int64), lo)
    if not lo.sum() <= total <= cap.sum():
        raise ValueError(f"cannot apportion {total} between the bounds {int(lo.sum())} and {int(cap.sum())}")
    pos = pi > 0
    if total == cap.sum():
        return cap.copy()
    # f(lam) = sum clip(lam * pi, lo, cap) is piecewise linear and non-decreasing; find f(lam) = total exactly
    pi = pi / pi.max() if pos.any() else pi  # scale-free; keeps the breakpoints finite where possible
    with np.errstate(over="ignore", divide="ignore"):
        bps = np.concatenate([lo[pos] / pi[pos], cap[pos] / pi[pos], [0.0]])
    bps = np.unique(bps[np.isfinite(bps)])
    F = np.clip(bps[:, None] * pi[None, :], lo, cap).sum(axis=1)
    j = int(np.searchsorted(F, total, side="right")) - 1  # F[j] <= total < F[j+1]
    j = max(j, 0)
    if j + 1 < len(bps):
        lam = bps[j] + (total - F[j]) * (bps[j + 1] - bps[j]) / max(F[j + 1] - F[j], 1e-300)
    else:
        lam = bps[j]
    x = np.clip(lam * pi, lo, cap)
    base = np.clip(np.floor(x + 1e-9).astype(np.int64), lo, cap)
    r = int(total - base.sum())
    frac = x - base
    if r > 0:
        room = base < cap
        order = np.lexsort((np.arange(len(x)), -pi, -np.where(room, frac, -np.inf)))
        first = order[:min(r, int(room.sum()))]
        base[first] += 1
        r -= len(first)
        for g in np.lexsort((np.arange(len(x)), -pi)):  # only when pi spans beyond float range
            if r <= 0:
                break
            add = min(r, int(cap[g] - base[g]))
            base[g] += add
            r -= add
    elif r < 0:
        room = base > lo
        order = np.lexsort((np.arange(len(x)), pi, np.where(room, frac, np.inf)))
        base[order[:-r]] -= 1
    assert base.sum() == total and np.all(base >= lo) and np.all(base <= cap)
    return base


def class_codes(labels: Sequence[Any] | NDArray[Any]) -> NDArray[np.int64]:
    """0..k-1 codes of the labels in sorted order of the distinct labels (np.unique's inverse)."""
    y = np.asarray(labels)
    if y.dtype.kind in "iu":
        return np.unique(y, return_inverse=True)[1].ravel().astype(np.int64)
    return np.unique(y.astype(str), return_inverse=True)[1].ravel().astype(np.int64)


def class_quota(counts: NDArray[np.integer] | Sequence[int], size: int, *, every_class: bool = True,
                leave_one: bool = False) -> NDArray[np.int64]:
    """Rows each class gives to a stratified sample of `size` (largest-remainder shares of the class sizes).

    Args:
        counts: Rows per class.
        size: Rows wanted; clipped to what the bounds allow (0 .. all rows, or all but one per class).
        every_class: Each class that can give a row gives at least one, when `size` allows one per such class.
        leave_one: Each class keeps at least one row out of the sample (a split that leaves every class on both
            sides where it can).
    """
    counts = np.asarray(counts, dtype=np.int64)
    hi = np.maximum(counts - 1, 0) if leave_one else counts
    size = int(min(max(int(size), 0), int(hi.sum())))
    lo = np.minimum(hi, 1) if every_class else np.zeros_like(hi)
    if lo.sum() > size:
        lo = np.zeros_like(hi)
    return apportion(counts, lo, hi, size)


def _draw(codes: NDArray[np.int64], quota: NDArray[np.int64], rng: np.random.Generator) -> NDArray[np.int64]:
    """Sorted positions: `quota[c]` rows of class c, each class's rows a random permutation (classes in order)."""
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(quota)))])
    picked = [rng.permutation(order[starts[c]:starts[c + 1]])[:t] for c, t in enumerate(quota)]
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.zeros(0, dtype=np.int64)


def stratified_sample(labels: Sequence[Any] | NDArray[Any], size: int, rng: np.random.Generator, *,
                      every_class: bool = True, leave_one: bool = False) -> NDArray[np.int64]:
    """Sorted positions of a class-stratified random sample of `size` rows of `labels` (see `class_quota`)."""
    codes = class_codes(labels)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    quota = class_quota(np.bincount(codes), size, every_class=every_class, leave_one=leave_one)
    return _draw(codes, quota, rng)


def stratified_split(labels: Sequence[Any] | NDArray[Any], size: int, rng: np.random.Generator, *,
                     every_class: bool = False) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(rest, held): `size` rows held out class-stratified, every class keeping at least one row in `rest`.

    `every_class`: also hold out at least one row of each class that has two or more (when `size` allows).
    """
    held = stratified_sample(labels, size, rng, every_class=every_class, leave_one=True)
    return np.setdiff1d(np.arange(len(labels)), held).astype(np.int64), held


def stratified_partition(labels: Sequence[Any] | NDArray[Any], n_parts: int, rng: np.random.Generator
                         ) -> list[NDArray[np.int64]]:
    """Random class-stratified partition of range(len(labels)) into `n_parts` parts whose sizes differ by at most 1
    (and each class's count in a part by at most 1 from its even share): classes are dealt round-robin."""
    y = class_codes(labels)
    order = np.concatenate([rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)])
    slot = rng.permutation(n_parts)[np.arange(len(y)) % n_parts]
    return [np.sort(order[slot == j]) for j in range(n_parts)]


def stratified_order(labels: Sequence[Any] | NDArray[Any], rng: np.random.Generator) -> NDArray[np.int64]:
    """A seeded permutation of range(len(labels)) whose every prefix is class-stratified.

    Each class's j-th row (in a random order inside the class) is placed at (j + u) / n_c, with u uniform in [0, 1)
    and n_c the class's size, and all rows are sorted by that key: so a prefix of m rows holds each class's
    proportional share m * n_c / n to within about one row (a class shows up once m reaches about n / n_c). Used
    where work stops when time runs out (the first run's time-boxed sample) yet whatever was done must be a
    stratified sample.
    """
    codes = class_codes(labels)
    key = np.empty(len(codes), dtype=np.float64)
    for c in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == c))
        key[rows] = (np.arange(len(rows)) + rng.random(len(rows))) / len(rows)
    return np.argsort(key, kind="stable").astype(np.int64)
