"""The self-check: flipped labels, ROC-AUC and precision at the number flipped per method."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.valuation import audit_dataset, flip_labels
from core.valuation.audit import agreement_check, recommend


def test_flip_labels_changes_exactly_the_share():
    y = np.arange(200) % 3
    out, mask = flip_labels(y, 0.05, n_classes=3, seed=1)
    assert mask.sum() == 10 and (out[mask] != y[mask]).all() and (out[~mask] == y[~mask]).all()
    again, mask2 = flip_labels(y, 0.05, n_classes=3, seed=1)
    np.testing.assert_array_equal(out, again)
    with pytest.raises(DataError, match="between 0 and 0.5"):
        flip_labels(y, 0.7)


def test_audit_reports_each_method(make_pair):
    train, _, _ = make_pair(n=240, flip=0.0, seed=2)
    rows, mask, results = audit_dataset(train.X, train.y, train.uids, methods=["knn-shapley", "random"],
                                        flip=0.1, seed=0)
    assert [r["method"] for r in rows] == ["knn-shapley", "random"]
    assert rows[0]["n_flipped"] == 24 == mask.sum()
    assert rows[0]["auc"] > 0.8 and rows[0]["auc"] > rows[1]["auc"] + 0.2
    assert 0 <= rows[0]["precision_at_k"] <= 1 and rows[0]["seconds"] >= 0
    assert set(results) == {"knn_shapley", "random"}


def test_the_self_checks_consensus_is_cross_fitted_on_its_own_flips(make_pair):
    train, _, _ = make_pair(n=300, flip=0.0, seed=3)
    rows, mask, results = audit_dataset(train.X, train.y, train.uids, flip=0.1, seed=0,
                                        methods=["label-quality", "random", "consensus", "knn-shapley"])
    by = {r["method"]: r for r in rows}
    assert list(by) == ["label-quality", "random", "knn-shapley", "consensus"]
    assert set(by["consensus"]["weights"]) == {"label-quality", "knn-shapley"}  # random is never a member
    assert by["consensus"]["auc"] >= max(by["label-quality"]["auc"], by["knn-shapley"]["auc"]) - 0.03
    assert results["consensus"].params["weights"] == "self_check"
    with pytest.raises(DataError, match="needs at least two other methods"):
        audit_dataset(train.X, train.y, train.uids, methods=["knn-shapley", "consensus"])


def test_recommend_names_the_best_method_and_why():
    rows = [{"method": "ts-dshapley", "auc": 0.80}, {"method": "label_quality", "auc": 0.86},
            {"method": "consensus", "auc": 0.91}, {"method": "random", "auc": 0.97}]
    assert recommend(rows) == ("consensus", "consensus: finds injected flips best here, AUC 0.91 vs 0.86 "
                                            "(label-quality)")
    method, why = recommend(rows, available=["ts_dshapley", "label_quality"])
    assert method == "label-quality" and "consensus, AUC 0.91, has no run yet" in why
    assert recommend(rows, available=["random"]) is None and recommend([]) is None


def test_agreement_check_compares_values_with_people():
    agreement = np.array([1.0, 0.9, np.nan, 0.6, 0.4, 0.8, 0.7, 0.5, 0.3, 1.0])
    rows = agreement_check({"tracks": agreement * 2, "opposes": -agreement}, agreement, low_share=0.2)
    tracks, opposes = rows
    assert tracks["spearman"] == pytest.approx(1.0) and opposes["spearman"] == pytest.approx(-1.0)
    assert tracks["n"] == 9 and tracks["n_low"] == 2 and tracks["low_mean"] == pytest.approx(0.35)
    assert opposes["low_mean"] == pytest.approx(1.0) and tracks["all_mean"] == pytest.approx(np.nanmean(agreement))
    with pytest.raises(DataError, match="only 1 numeric value"):
        agreement_check({"x": np.arange(3.0)}, np.array([np.nan, 1.0, np.nan]))


def test_the_self_check_measures_agreement_with_people_on_the_rows_it_kept(make_pair):
    train, _, _ = make_pair(n=300, flip=0.0, seed=5)
    # "people" agree with a row's label less where it lies nearer another class's centre (unknown on 30 rows)
    centre = np.stack([train.X[train.y == c].mean(0) for c in range(3)])
    dist = np.linalg.norm(train.X[:, None, :] - centre[None], axis=2)
    own = dist[np.arange(len(train.y)), train.y]
    dist[np.arange(len(train.y)), train.y] = np.inf
    agreement = 1.0 / (1.0 + np.exp(own - dist.min(1)))
    agreement[:30] = np.nan
    rows, mask, results = audit_dataset(train.X, train.y, train.uids, flip=0.1, seed=0, agreement=agreement,
                                        methods=["label-quality", "random", "knn-shapley", "consensus"])
    by = {r["method"]: r for r in rows}
    assert by["label-quality"]["agreement"] > 0.3 > abs(by["random"]["agreement"])
    kept = ~mask & np.isfinite(agreement)  # flipped rows carry a label people never judged
    from scipy.stats import spearmanr

    assert by["knn-shapley"]["agreement"] == pytest.approx(
        spearmanr(results["knn_shapley"].values[kept], agreement[kept])[0])
    check = results["consensus"].params["self_check"]
    assert "track human agreement" in check["rule"] and set(check["member_agreement"]) == {"label_quality",
                                                                                          "knn_shapley"}
    assert by["consensus"]["agreement"] >= max(by["label-quality"]["agreement"], by["knn-shapley"]["agreement"]) - 0.05
    plain, _, _ = audit_dataset(train.X, train.y, train.uids, flip=0.1, seed=0, methods=["label-quality", "random"])
    assert "agreement" not in plain[0]
    with pytest.raises(DataError, match="has 3 values for 300 rows"):
        audit_dataset(train.X, train.y, train.uids, flip=0.1, methods=["random"], agreement=np.ones(3))


def test_recommend_with_agreement_puts_methods_that_track_people_first():
    rows = [{"method": "label-quality", "auc": 0.870, "agreement": 0.33},
            {"method": "consensus", "auc": 0.871, "agreement": 0.32},  # finds flips a hair better, tracks people less
            {"method": "ts-dshapley", "auc": 0.83, "agreement": 0.26}, {"method": "random", "auc": 0.9}]
    method, why = recommend(rows, agreement_name="confidence")
    assert method == "label-quality"
    assert why == ("label-quality: tracks confidence at least as well as any single method (Spearman 0.33 vs 0.32 "
                   "for consensus) and finds injected flips best among those, AUC 0.87 vs 0.87 (consensus)")
    rows[1]["agreement"] = 0.34  # the consensus now tracks people at least as well as any member: it wins
    assert recommend(rows, agreement_name="confidence") == (
        "consensus", "consensus: finds injected flips best here, AUC 0.87 vs 0.87 (label-quality), and tracks "
                     "confidence at least as well as any single method (Spearman 0.34)")
    method, why = recommend(rows, available=["ts_dshapley"], agreement_name="confidence")
    assert method == "ts-dshapley" and "(consensus, AUC 0.87, has no run yet)" in why
    assert recommend([{k: v for k, v in r.items() if k != "agreement"} for r in rows])[0] == "consensus"
