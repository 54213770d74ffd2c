"""The self-check on the user's own data: flip a seeded share of labels, value, and see who finds them.

For each method: ROC-AUC of "low value" against "flipped", precision among the k lowest-valued rows where k is the
number flipped, and seconds. No peer ships this; it tells a user which method finds bad rows in *their* data.
"consensus" among the methods is the rank average of the other audited methods with cross-fitted self-check weights
(consensus.self_check_weights): a row's weights are chosen on the other folds' flips, so its AUC here is honest and
costs no extra valuation. `recommend` turns the table into the method the app colours by, with its reason, and
`agreement_check` compares values with a column of human agreement (e.g. the demo's annotator `confidence`).
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError
from core.valuation.base import ProgressFn, Split, Values
from core.valuation.validation import flip_labels, value_dataset


DEFAULT_METHODS = ("ts_dshapley", "knn_shapley", "data_oob", "label_quality", "consensus")
"""The methods the self-check compares unless told otherwise."""


def detection_scores(values: NDArray[np.floating], flipped: NDArray[np.bool_]) -> dict[str, float]:
    """ROC-AUC of -value for the flipped rows, and precision among the k lowest values (k = number flipped)."""
    from sklearn.metrics import roc_auc_score

    k = int(flipped.sum())
    lowest = np.argsort(values, kind="stable")[:k]
    return {"auc": float(roc_auc_score(flipped, -np.asarray(values))),
            "precision_at_k": float(flipped[lowest].mean()) if k else float("nan"), "n_flipped": k}


def audit_dataset(X: NDArray[np.floating], y: NDArray[np.int64], uids: Sequence[str] | NDArray[np.str_], *,
                  methods: Sequence[str] = DEFAULT_METHODS, flip: float = 0.05,
                  valid: Split | None = None, seed: int = 0, classes: Sequence[str] | None = None,
                  method_options: dict[str, dict[str, Any]] | None = None,
                  agreement: NDArray[np.floating] | None = None,
                  on_progress: ProgressFn | None = None) -> tuple[list[dict[str, Any]], NDArray[np.bool_],
                                                                  dict[str, Values]]:
    """Flip `flip` of the labels in a copy, value it with each method, and score how well each finds the flips.

    Args:
        agreement: (n,) human agreement with each row's given label (NaN: unknown), or None. When given, each
            row of the table also holds `agreement`: Spearman's rho between the method's values on the copy and
            the agreement, over the rows whose label was not flipped (their label is the one people judged), and
            the consensus' weights also track it (cross-fitted, `consensus.self_check_weights`).

    Returns:
        (rows: one dict per method with method, auc, precision_at_k, n_flipped, seconds (and agreement);
         the flipped mask; the Values of each method).
    """
    from core.valuation.registry import method_key

    keys = [method_key(m) for m in methods]
    with_consensus = "consensus" in keys
    keys = [k for k in keys if k != "consensus"]
    members = [k for k in keys if k != "random"]
    if with_consensus and len(members) < 2:
        raise DataError("the self-check's consensus needs at least two other methods to combine (e.g. "
                        "--methods ts-dshapley,label-quality,consensus)")
    n_classes = len(classes) if classes is not None else int(np.max(y) + 1)
    y_flipped, mask = flip_labels(np.asarray(y, dtype=np.int64), flip, n_classes=n_classes, seed=seed)
    people = None
    if agreement is not None:
        agreement = np.asarray(agreement, dtype=np.float64)
        if agreement.shape != (len(mask),):
            raise DataError(f"the agreement column has {len(agreement)} values for {len(mask)} rows")
        people = np.isfinite(agreement) & ~mask
        if people.sum() < 3:
            raise DataError(f"the agreement column has only {int(people.sum())} numeric value(s) on rows whose "
                            f"label the self-check kept; it needs at least 3")
    rows, results = [], {}
    for i, key in enumerate(keys):
        def sub(f: float, msg: str, partial: Any = None, i: int = i) -> None:
            if on_progress:
                on_progress((i + f) / len(keys), msg, None)
        t0 = time.perf_counter()
        res = value_dataset(X, y_flipped, uids, method=key, valid=valid, seed=seed, classes=classes,
                            on_progress=sub, **dict((method_options or {}).get(key, {})))
        sec = time.perf_counter() - t0
        results[key] = res
        rows.append({"method": key.replace("_", "-"), **detection_scores(res.values, mask), "seconds": sec})
        if people is not None:
            rows[-1]["agreement"] = _spearman(res.values[people], agreement[people])
    if with_consensus:
        from core.valuation.consensus import combine, member_ranks, self_check_weights

        t0 = time.perf_counter()
        fit = self_check_weights(member_ranks([results[k] for k in members]), mask, seed=seed, agreement=agreement)
        cons = combine([results[k] for k in members], weights=fit.row_weights(),
                       params={"weights": "self_check", "self_check": fit.describe()},
                       seconds=sum(r["seconds"] for r in rows if r["method"].replace("-", "_") in members))
        results["consensus"] = cons
        rows.append({"method": "consensus", **detection_scores(cons.values, mask),
                     "seconds": cons.seconds + time.perf_counter() - t0,
                     "weights": {k.replace("_", "-"): w for k, w in fit.describe()["weights"].items()}})
        if people is not None:
            rows[-1]["agreement"] = _spearman(cons.values[people], agreement[people])
    return rows, mask, results


def _spearman(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def recommend(rows: Sequence[dict[str, Any]], available: Sequence[str] | None = None, *,
              agreement_name: str | None = None) -> tuple[str, str] | None:
    """The method the self-check ranks best (highest ROC-AUC, random never), and why, in one line.

    When the rows carry `agreement` (Spearman with a column of human agreement, see `audit_dataset`), the methods
    that track it at least as well as the best single method (any but the consensus) come first, then the others;
    within each group, the highest ROC-AUC wins. Users who name such a column are told which rows people doubt, so
    the colour must not track them worse than a single method would.

    Args:
        rows: The self-check's table (dicts with method and auc, optionally agreement).
        available: Methods (CLI or registry names) that have a finished valuation run; None: any.
        agreement_name: The agreement column's name, for the reason.

    Returns:
        (method as the CLI names it, reason such as "consensus: finds injected flips best here, AUC 0.91 vs 0.86
        (label-quality)"), or None when no audited method qualifies.
    """
    scored = [{**r, "method": str(r["method"]).replace("_", "-")} for r in rows
              if str(r.get("method")) != "random" and r.get("auc") is not None and np.isfinite(r["auc"])]
    if not scored:
        return None
    ranked = sorted(scored, key=lambda r: -float(r["auc"]))
    people = [r for r in ranked if r.get("agreement") is not None and np.isfinite(r["agreement"])]
    singles = [float(r["agreement"]) for r in people if r["method"] != "consensus"]
    bar = max(singles) if singles else None
    if bar is not None:
        first = [r for r in people if float(r["agreement"]) >= bar - 1e-9]
        ranked = first + [r for r in ranked if not any(r is f for f in first)]
    names = None if available is None else {str(a).replace("_", "-") for a in available}
    pick = next((r for r in ranked if names is None or r["method"] in names), None)
    if pick is None:
        return None
    others = [r for r in ranked if r is not pick]
    if not others:
        return pick["method"], f"{pick['method']}: the only method in the self-check, AUC {pick['auc']:.2f}"
    top_auc = max(ranked, key=lambda r: float(r["auc"]))
    col = agreement_name or "human agreement"
    if bar is not None and pick is ranked[0]:
        rival = max(others, key=lambda r: float(r["auc"]))
        if pick is top_auc:
            why = (f"{pick['method']}: finds injected flips best here, AUC {pick['auc']:.2f} vs {rival['auc']:.2f} "
                   f"({rival['method']}), and tracks {col} at least as well as any single method (Spearman "
                   f"{pick['agreement']:.2f})")
        else:
            why = (f"{pick['method']}: tracks {col} at least as well as any single method (Spearman "
                   f"{pick['agreement']:.2f} vs {top_auc.get('agreement', float('nan')):.2f} for "
                   f"{top_auc['method']}) and finds injected flips best among those, AUC {pick['auc']:.2f} vs "
                   f"{top_auc['auc']:.2f} ({top_auc['method']})")
    elif pick is ranked[0]:
        best_other = others[0]
        why = (f"{pick['method']}: finds injected flips best here, AUC {pick['auc']:.2f} vs "
               f"{best_other['auc']:.2f} ({best_other['method']})")
    else:
        why = (f"{pick['method']}: the best self-checked method with a finished run, AUC {pick['auc']:.2f} "
               f"({ranked[0]['method']}, AUC {ranked[0]['auc']:.2f}, has no run yet)")
    return pick["method"], why


def agreement_check(values: dict[str, NDArray[np.floating]], agreement: NDArray[np.floating], *,
                    low_share: float = 0.05) -> list[dict[str, Any]]:
    """How each method's values track human agreement (e.g. the share of annotators who chose the given label).

    Rows where `agreement` is missing (NaN) are left out. Per method: Spearman's rho between value and agreement,
    the mean agreement of the `low_share` lowest-valued rows, and of all rows. A method that finds injected flips
    but not rows people disagree on tells users something different.
    """
    from scipy.stats import spearmanr

    a = np.asarray(agreement, dtype=np.float64)
    ok = np.isfinite(a)
    if ok.sum() < 3:
        raise DataError(f"the agreement column has only {int(ok.sum())} numeric value(s); it needs at least 3")
    out = []
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64)
        good = ok & np.isfinite(v)
        k = max(1, int(round(low_share * good.sum())))
        low = np.flatnonzero(good)[np.argsort(v[good], kind="stable")[:k]]
        rho = spearmanr(v[good], a[good])[0]
        out.append({"method": name.replace("_", "-"), "spearman": float(rho), "low_mean": float(a[low].mean()),
                    "all_mean": float(a[good].mean()), "n": int(good.sum()), "n_low": k})
    return out
