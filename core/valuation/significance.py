"""How sure a value is: each row significantly harmful, uncertain, or significantly helpful.

A value is the mean of `count` estimates with standard error `stderr`; its two-sided `level` interval is
value ± t(1 - (1 - level) / 2, count - 1) · stderr (Student's t over the estimates). A row is *harmful* only when the
whole interval lies below 0, *helpful* only when it lies above 0, and *uncertain* otherwise, including rows whose
value has no standard error (fewer than 2 estimates, or a method that gives none). The Value page headline, the
Map's colour legend, Inspect's cards and the clean-then-diversify strategy all use this one rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from core.valuation.base import Values

LEVEL = 0.95
HARMFUL, UNCERTAIN, HELPFUL = "harmful", "uncertain", "helpful"
VERDICTS = (HARMFUL, UNCERTAIN, HELPFUL)
COLOURS = {HARMFUL: "#d62728", UNCERTAIN: "#c7c7c7", HELPFUL: "#1f77b4"}  # for a map legend: red, grey, blue
LEGEND = {
    HARMFUL: "significantly below 0: the upper end of its 95 % interval is below 0",
    UNCERTAIN: "its 95 % interval includes 0 (or it has no standard error): not distinguishable from 0",
    HELPFUL: "significantly above 0: the lower end of its 95 % interval is above 0",
}


def intervals(values: Values | NDArray[np.floating], stderr: NDArray[np.floating] | None = None,
              counts: NDArray[np.integer] | None = None, *,
              level: float = LEVEL) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(low, high) of each value's two-sided t-interval; nan where there is no standard error or count < 2."""
    from scipy.special import stdtrit  # Student t's quantile (what stats.t.ppf computes), without importing
    # scipy.stats (about 0.8 s on the first call in a process, paid by the first map selection)

    if isinstance(values, Values):
        v, se, n = values.values, values.stderr, values.counts
    else:
        if stderr is None or counts is None:
            raise TypeError("pass a Values, or values with stderr and counts")
        v, se, n = values, stderr, counts
    v = np.asarray(v, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    ok = (n >= 2) & np.isfinite(se) & (se >= 0)
    t = np.full(len(v), np.nan)
    df, at = np.unique(n[ok] - 1, return_inverse=True)  # a few distinct counts: one (slow, iterative) quantile each
    t[ok] = stdtrit(df, 0.5 + level / 2)[at]
    half = t * np.where(ok, se, np.nan)
    return v - half, v + half


def classify(values: Values | NDArray[np.floating], stderr: NDArray[np.floating] | None = None,
             counts: NDArray[np.integer] | None = None, *, level: float = LEVEL) -> NDArray[np.str_]:
    """"harmful" / "uncertain" / "helpful" per row (see the module docstring)."""
    low, high = intervals(values, stderr, counts, level=level)
    out = np.full(len(low), UNCERTAIN, dtype=object)
    with np.errstate(invalid="ignore"):
        out[high < 0] = HARMFUL
        out[low > 0] = HELPFUL
    return out.astype(str)


@dataclass(frozen=True)
class Significance:
    """Shares of a valuation run's rows by verdict, and how many rows could be tested at all."""

    n: int
    harmful: int
    uncertain: int
    helpful: int
    below_zero: int  # raw count of values < 0, significant or not
    with_stderr: int  # rows that have a standard error (count >= 2)
    level: float = LEVEL

    def share(self, verdict: str) -> float:
        return {HARMFUL: self.harmful, UNCERTAIN: self.uncertain, HELPFUL: self.helpful}[verdict] / max(self.n, 1)

    def headline(self) -> str:
        """One line for the Value page: 'harmful' only when significant."""
        below = self.below_zero / max(self.n, 1)
        if self.with_stderr == 0:
            return (f"{below:.1%} of values are below 0, but this method gives no standard errors: no row can be "
                    "called significantly harmful")
        return (f"{self.share(HARMFUL):.1%} significantly harmful · {self.share(UNCERTAIN):.1%} uncertain · "
                f"{self.share(HELPFUL):.1%} significantly helpful ({int(round(self.level * 100))} % intervals; "
                f"{below:.1%} of values are below 0, significant or not)")


def summarize(values: Values, *, level: float = LEVEL) -> Significance:
    """Counts of harmful / uncertain / helpful rows of one valuation run."""
    verdict = classify(values, level=level)
    ok = (np.asarray(values.counts) >= 2) & np.isfinite(np.asarray(values.stderr, dtype=np.float64))
    return Significance(n=len(verdict), harmful=int((verdict == HARMFUL).sum()),
                        uncertain=int((verdict == UNCERTAIN).sum()), helpful=int((verdict == HELPFUL).sum()),
                        below_zero=int((np.asarray(values.values) < 0).sum()), with_stderr=int(ok.sum()),
                        level=level)


def significantly_harmful(values: Values, *, level: float = LEVEL) -> NDArray[np.str_]:
    """The uids of the rows whose whole interval lies below 0."""
    return np.asarray(values.uids)[classify(values, level=level) == HARMFUL].astype(str)
