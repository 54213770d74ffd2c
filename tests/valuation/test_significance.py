"""Values that say how sure they are: harmful only when the whole 95 % interval is below 0."""
from __future__ import annotations

import numpy as np
import pytest

from core.valuation import significance as sig
from core.valuation.base import Values


def _values(v, se, n) -> Values:
    k = len(v)
    return Values(uids=np.array([f"u{i}" for i in range(k)]), values=np.asarray(v, float),
                  stderr=np.asarray(se, float), counts=np.asarray(n, np.int64), method="test")


def test_harmful_only_when_the_upper_end_is_below_zero():
    # t(0.975, 9) = 2.262: -0.01 ± 0.0045 (se 0.002) is harmful; -0.01 ± 0.0226 (se 0.01) is uncertain
    vals = _values([-0.01, -0.01, 0.01, 0.0, -0.5, -0.2], [0.002, 0.01, 0.002, 0.001, np.nan, 0.01],
                   [10, 10, 10, 10, 1, 1])
    assert sig.classify(vals).tolist() == ["harmful", "uncertain", "helpful", "uncertain", "uncertain", "uncertain"]
    low, high = sig.intervals(vals)
    assert high[0] == pytest.approx(-0.01 + 2.262157 * 0.002, rel=1e-5) and np.isnan(high[4])
    assert sig.significantly_harmful(vals).tolist() == ["u0"]


def test_headline_counts_and_the_demo_case():
    # the demo: 31 % of values below 0 but the standard errors as large as the values
    rng = np.random.default_rng(0)
    v = rng.normal(0.002, 0.01, size=1000)
    vals = _values(v, np.full(1000, 0.01), np.full(1000, 20))
    s = sig.summarize(vals)
    assert s.harmful + s.uncertain + s.helpful == 1000 and s.below_zero > 300
    assert s.harmful < s.below_zero / 3  # most negatives are not distinguishable from 0
    assert "significantly harmful" in s.headline() and "% uncertain" in s.headline()
    none = sig.summarize(_values([-1.0, 1.0], [np.nan, np.nan], [1, 1]))
    assert none.harmful == 0 and "no standard errors" in none.headline()
    assert set(sig.LEGEND) == set(sig.VERDICTS)


def test_removal_curve_caption_agrees_with_the_curve():
    from core.valuation.removal import curve_caption

    curve = [{"fraction": 0.0, "n_removed": 0, "score": 0.80, "score_highest": 0.80, "score_random": 0.80},
             {"fraction": 0.05, "n_removed": 5, "score": 0.83, "score_highest": 0.78, "score_random": 0.80},
             {"fraction": 0.15, "n_removed": 15, "score": 0.81, "score_highest": 0.79, "score_random": 0.79},
             {"fraction": 0.20, "n_removed": 20, "score": 0.76, "score_highest": 0.78, "score_random": 0.78}]
    text = curve_caption(curve, 0.05)
    assert "lowest-valued 5.0 % (the suggestion) scores 0.8300 against 0.8000" in text
    assert "From 20 % removed on, lowest-first scores below highest-first" in text and "below random" in text
    good = curve_caption(curve[:3], 0.05)
    assert "stays at or above highest-first" in good and "below random" not in good
