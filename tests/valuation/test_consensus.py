"""Consensus: rank average of members, each member's rank kept per row."""
from __future__ import annotations

import numpy as np

from core.valuation import Values, consensus
from core.valuation.consensus import combine, normalised_rank, self_check_weights, simplex_grid


def _vals(uids, values, method):
    n = len(uids)
    return Values(uids=np.asarray(uids), values=np.asarray(values, float), stderr=np.full(n, np.nan),
                  counts=np.ones(n, np.int64), method=method)


def test_combine_averages_normalised_ranks_and_keeps_them():
    a = _vals(["x", "y", "z"], [0.1, 0.5, 0.9], "a")
    b = _vals(["z", "y", "x"], [-3.0, 2.0, 1.0], "b")  # other order: aligned by uid
    c = combine([a, b])
    np.testing.assert_allclose(c.extra["rank_a"], [0, 0.5, 1])
    np.testing.assert_allclose(c.extra["rank_b"], [0.5, 1, 0])
    np.testing.assert_allclose(c.values, [0.25, 0.75, 0.5])
    assert (c.counts == 2).all() and c.params["members"] == ["a", "b"]
    np.testing.assert_allclose(normalised_rank(np.array([1.0, 1.0, 2.0])), [0.25, 0.25, 1.0])


def test_consensus_finds_flipped_rows(blobs, auc):
    train, valid, flipped = blobs
    v = consensus(train, valid=valid, seed=0, members=("knn_shapley", "label_quality", "ts_dshapley"),
                  member_options={"ts_dshapley": {"n_passes": 3, "n_permutations": 3, "subset_size": 50,
                                                  "n_jobs": 1}})
    assert auc(v.values, flipped) > 0.9
    assert set(v.extra) == {"rank_knn_shapley", "rank_label_quality", "rank_ts_dshapley"}
    assert ((v.values >= 0) & (v.values <= 1)).all()


def _member_ranks(rng, injected, quality):
    """Ranks of a member that ranks injected rows low with the given strength (0: random)."""
    score = rng.normal(size=len(injected)) - quality * injected
    return normalised_rank(score)


def test_self_check_weights_are_cross_fitted_without_leakage():
    rng = np.random.default_rng(0)
    n = 1000
    injected = np.zeros(n, dtype=bool)
    injected[rng.choice(n, 100, replace=False)] = True
    ranks = {"good": _member_ranks(rng, injected, 2.0), "weak": _member_ranks(rng, injected, 0.5),
             "noise": _member_ranks(rng, injected, 0.0)}
    fit = self_check_weights(ranks, injected, n_folds=5, seed=1)
    assert fit.weights.shape == (5, 3) and np.allclose(fit.weights.sum(1), 1)
    assert (fit.weights[:, 0] > fit.weights[:, 2]).all()  # the member that finds the flips weighs most
    assert fit.member_auc["good"] > fit.member_auc["weak"] > fit.member_auc["noise"] - 0.1
    assert fit.cross_fitted_auc >= fit.member_auc["good"] - 0.02
    assert np.bincount(fit.folds).tolist() == [200] * 5 and all(injected[fit.folds == f].sum() > 5 for f in range(5))
    # leakage: rewriting fold 0's injected flags and its rows' ranks changes no weight that fold 0's rows use...
    f0 = fit.folds == 0
    inj2 = injected.copy()
    inj2[f0] = ~inj2[f0]
    ranks2 = {k: r.copy() for k, r in ranks.items()}
    ranks2["noise"][f0 & inj2] = 0.0  # now the noise member "finds" fold 0's new flips perfectly
    fit2 = self_check_weights(ranks2, inj2, n_folds=5, seed=1)
    np.testing.assert_array_equal(fit2.folds, fit.folds)  # folds depend on the seed and n only
    np.testing.assert_array_equal(fit2.weights[0], fit.weights[0])
    # ...while the other folds, which train on fold 0's flips, move weight to the member that now finds them
    assert (fit2.weights[1:, 2] > fit.weights[1:, 2]).all()


def test_combine_with_weights_per_row():
    a = _vals(["x", "y", "z"], [0.1, 0.5, 0.9], "a")
    b = _vals(["x", "y", "z"], [0.9, 0.5, 0.1], "b")
    c = combine([a, b], weights=np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    np.testing.assert_allclose(c.values, [0.0, 0.5, 0.0])
    np.testing.assert_allclose(combine([a, b], weights=np.array([3.0, 1.0])).values, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(simplex_grid(3).sum(1), 1.0)
    assert len(simplex_grid(4)) == 286  # step 0.1


def test_calibrated_consensus_learns_its_weights_on_the_data(make_pair, auc):
    from core.valuation import value_dataset

    train, _, flipped = make_pair(n=300, flip=0.15, seed=4)
    v = value_dataset(train.X, train.y, train.uids, method="consensus", seed=0,
                      members=["label-quality", "random"])
    check = v.params["self_check"]
    assert v.params["weights"] == "self_check" and check["n_injected"] == 30
    assert check["weights"]["label_quality"] > 0.7 > check["weights"]["random"]
    assert check["member_auc"]["label_quality"] > check["member_auc"]["random"] + 0.2
    assert auc(v.values, flipped) > auc(v.extra["rank_random"], flipped) + 0.2
    assert set(v.extra) == {"rank_label_quality", "rank_random"}
    eq = value_dataset(train.X, train.y, train.uids, method="consensus", seed=0,
                       members=["label-quality", "random"], weights="equal")
    assert eq.params["weights"] == "equal" and auc(v.values, flipped) > auc(eq.values, flipped)


def test_self_check_weights_track_human_agreement_cross_fitted():
    rng = np.random.default_rng(2)
    n = 1500
    injected = np.zeros(n, dtype=bool)
    injected[rng.choice(n, 150, replace=False)] = True
    agreement = rng.uniform(0.3, 1.0, n)
    agreement[rng.choice(n, 200, replace=False)] = np.nan  # unknown on some rows, as in the demo
    people = np.nan_to_num(agreement, nan=0.65)
    ranks = {"flips": normalised_rank(rng.normal(size=n) - 2.0 * injected),  # finds flips, blind to people
             "people": normalised_rank(rng.normal(size=n) - 2.0 * injected + 6.0 * people),
             "noise": normalised_rank(rng.normal(size=n))}
    plain = self_check_weights(ranks, injected, n_folds=5, seed=1)
    fit = self_check_weights(ranks, injected, n_folds=5, seed=1, agreement=agreement)
    assert plain.member_agreement is None and "member_agreement" not in plain.describe()
    assert fit.member_agreement["people"] > 0.5 > abs(fit.member_agreement["flips"])
    assert (fit.weights[:, 1] > plain.weights[:, 1]).all()  # weight moves to the member that tracks people...
    from scipy.stats import spearmanr

    R = np.vstack(list(ranks.values()))
    rated = np.isfinite(agreement) & ~injected
    plain_rho = spearmanr((plain.row_weights() * R.T).sum(1)[rated], agreement[rated])[0]
    assert fit.cross_fitted_agreement > plain_rho + 0.1
    best = max(fit.member_auc.values())
    assert fit.cross_fitted_auc >= best - 0.02  # ...without losing the injected flips
    assert fit.describe()["rule"].startswith("the weights that track human agreement best")
    # a row's own agreement never trains its weight: rewrite fold 0's agreement to favour the "noise" member
    f0 = fit.folds == 0
    agreement2 = agreement.copy()
    agreement2[f0] = ranks["noise"][f0]
    fit2 = self_check_weights(ranks, injected, n_folds=5, seed=1, agreement=agreement2)
    np.testing.assert_array_equal(fit2.weights[0], fit.weights[0])
    assert not np.array_equal(fit2.weights[1:], fit.weights[1:])  # the folds that train on fold 0's rows see it
