"""Every registered valuation method passes the same contract (in the way scikit-learn's parametrize_with_checks
runs every estimator through one set of checks); option checks name the option, its range and what was given."""
from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import OptionError
from core.valuation import REGISTRY
from core.valuation.registry import method_key

# Small but real settings, so the contract runs in seconds; a method not listed runs with its defaults.
FAST = {
    "ts_dshapley": {"n_passes": 2, "n_permutations": 2, "subset_size": 30, "n_jobs": 1},
    "tmc_shapley": {"max_permutations": 20, "min_permutations": 10, "batch_permutations": 10},
    "data_oob": {"n_estimators": 20},
    "consensus": {"members": ["knn_shapley", "label_quality"]},
}


@pytest.fixture
def pair(make_pair):
    return make_pair(n=60, n_valid=30, n_classes=3, dim=6)


@pytest.mark.parametrize("key", list(REGISTRY))
def test_method_contract(key, pair):
    train, valid, _ = pair
    spec = REGISTRY[key]
    opts = FAST.get(key, {})
    a = spec.function(train, valid=valid, seed=3, **opts)
    assert a.method == key and method_key(spec.name) == key
    np.testing.assert_array_equal(a.uids, train.uids)  # aligned with the rows it was given
    assert a.values.shape == a.stderr.shape == a.counts.shape == (len(train),)
    assert np.isfinite(a.values).all()
    json.dumps(a.params)  # JSON-safe as it is, no converter
    b = spec.function(train, valid=valid, seed=3, **opts)
    np.testing.assert_array_equal(a.values, b.values)  # same seed, same values
    other = valid.take(np.arange(len(valid))[: len(valid) // 2 + 3])
    c = spec.function(train, valid=other, seed=3, **opts)
    if spec.needs_valid:
        assert not np.array_equal(a.values, c.values)  # the validation rows matter
    else:
        np.testing.assert_array_equal(a.values, c.values)  # ignored ...
        np.testing.assert_array_equal(a.values, spec.function(train, valid=None, seed=3, **opts).values)
    assert spec.about and "\n" not in spec.about


def _bad(o):
    if o.choices:
        return "nope"
    if o.type is bool:
        return "yes"
    if o.type is str:
        return 5
    return (o.low - 1) if o.low is not None else "x"


OPTIONS = [(k, o) for k, s in REGISTRY.items() for o in s.options]


@pytest.mark.parametrize("key, option", OPTIONS, ids=[f"{k}-{o.name}" for k, o in OPTIONS])
def test_options_are_checked_at_the_function(key, option, pair):
    train, valid, _ = pair
    spec = REGISTRY[key]
    bad = _bad(option)
    with pytest.raises(OptionError, match=rf"'{option.name}' option \({option.flag}\) of .* must be .*; got {bad!r}"):
        spec.function(train, valid=valid, seed=0, **{option.name: bad})
    assert option.default is None or option.check(option.default, key) == option.default  # defaults are allowed
    if option.label:  # shown on the Value page
        assert option.help


def test_unknown_options_are_named_with_the_ones_there_are():
    with pytest.raises(OptionError, match="knn-shapley takes no option 'n_passes'; its options: k"):
        REGISTRY["knn_shapley"].check_options({"n_passes": 3})
    assert REGISTRY["knn_shapley"].check_options({"k": np.int64(4)}) == {"k": 4}


def test_the_range_is_in_scikit_learn_words():
    o = next(o for o in REGISTRY["ts_dshapley"].options if o.name == "n_passes")
    with pytest.raises(OptionError) as e:
        o.check(0, "ts_dshapley")
    assert str(e.value) == ("the 'n_passes' option (--n-passes) of ts_dshapley must be an int in the range "
                            "[1, 1000]; got 0")
