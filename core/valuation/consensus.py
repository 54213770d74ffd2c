"""Consensus: the weighted rank average of several valuation methods (Winnow's own).

No single detector of harmful rows wins on every data set; the mean of each member's normalised rank (0 = the
member's lowest value, 1 = its highest) did better than the best member on both data sets of DESIGN.md, but lost to
label quality on the demo tweets, where the members differ most. So by default the weights come from the
self-check on the user's own data: a seeded share of labels is flipped in a copy, every member values the copy,
and the weights are the point of a simplex grid whose weighted rank average finds those injected flips best
(ROC-AUC). The weights are cross-fitted: rows fall into folds, and a row's weights are chosen on the other folds'
injected flips only, so a row's own flip never trains its weight (`self_check_weights`).

The result keeps every member's rank per row (`extra["rank_<member>"]`), so the app can say which signals call a
row harmful. Values lie in [0, 1]: a rank, not a Shapley value (0.5 is the median row); higher = more helpful.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from core.valuation.base import ProgressFn, Split, Values, normalised_rank

DEFAULT_MEMBERS = ("label_quality", "knn_shapley", "data_oob", "ts_dshapley")


def member_ranks(members: Sequence[Values], uids: NDArray[np.str_] | None = None) -> dict[str, NDArray[np.float64]]:
    """Each member's normalised ranks, aligned to `uids` (default: the first member's order)."""
    base = members[0].uids if uids is None else np.asarray(uids)
    ranks = {}
    for v in members:
        pos = {u: i for i, u in enumerate(v.uids)}
        idx = np.array([pos[u] for u in base])
        ranks[v.method] = normalised_rank(v.values[idx])
    return ranks


def combine(members: Sequence[Values], *, params: dict[str, Any] | None = None, seconds: float | None = None,
            weights: NDArray[np.floating] | None = None) -> Values:
    """Rank-average member results over the same uids (aligned to the first member's order).

    Args:
        weights: None (equal weights), (members,) weights, or (n, members) weights per row (the cross-fitted
            self-check weights); each row's weights sum to 1.
    """
    base = members[0]
    ranks = member_ranks(members)
    R = np.vstack(list(ranks.values()))  # (members, n)
    m, n = R.shape
    W = np.full((n, m), 1.0 / m) if weights is None else np.broadcast_to(np.asarray(weights, float), (n, m))
    W = W / W.sum(1, keepdims=True)
    mean = (W * R.T).sum(1)
    if m > 1:  # standard error of a weighted mean over the members (effective number of members 1 / sum w^2)
        var = (W * (R.T - mean[:, None]) ** 2).sum(1) / np.maximum(1.0 - (W**2).sum(1), 1e-12)
        se = np.sqrt(var * (W**2).sum(1))
    else:
        se = np.full(n, np.nan)
    p = {"members": [v.method for v in members],
         "scale": "mean normalised rank in [0, 1]" if weights is None else "weighted mean normalised rank in [0, 1]"}
    p.update(params or {})
    p["member_params"] = {v.method: v.params for v in members}
    return Values(uids=np.asarray(base.uids), values=mean, stderr=se, counts=np.full(n, m, np.int64),
                  method="consensus", params=p,
                  seconds=float(sum(v.seconds for v in members)) if seconds is None else seconds,
                  extra={f"rank_{k}": r for k, r in ranks.items()})


def simplex_grid(m: int, max_points: int = 300) -> NDArray[np.float64]:
    """Weight vectors on the simplex (each sums to 1) with the finest step 1/s that gives at most `max_points`."""
    from itertools import combinations
    from math import comb

    s = 1
    while comb(s + 1 + m - 1, m - 1) <= max_points and s < 20:
        s += 1
    pts = []
    for bars in combinations(range(s + m - 1), m - 1):  # stars and bars
        edges = (-1, *bars, s + m - 1)
        pts.append([edges[i + 1] - edges[i] - 1 for i in range(m)])
    return np.asarray(pts, dtype=np.float64) / s


def _aucs(scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> NDArray[np.float64]:
    """ROC-AUC of each row of `scores` (k, n) for `positive` (Mann-Whitney with average ties)."""
    from scipy.stats import rankdata

    npos = int(positive.sum())
    nneg = len(positive) - npos
    if npos == 0 or nneg == 0:
        return np.full(len(scores), np.nan)
    r = rankdata(scores, axis=1)
    return (r[:, positive].sum(1) - npos * (npos + 1) / 2.0) / (npos * nneg)


@dataclass(frozen=True)
class SelfCheckWeights:
    """Cross-fitted consensus weights: `weights[f]` was chosen on the injected flips of every fold but f."""

    members: tuple[str, ...]
    folds: NDArray[np.int64]  # (n,) fold of each row
    weights: NDArray[np.float64]  # (n_folds, members)
    member_auc: dict[str, float]  # each member's ROC-AUC for the injected flips (all rows)
    cross_fitted_auc: float  # the cross-fitted weighted consensus' ROC-AUC for the injected flips (all rows)
    member_agreement: dict[str, float] | None = None  # each member's Spearman with human agreement (if given)
    cross_fitted_agreement: float | None = None  # the cross-fitted consensus' Spearman with it

    def row_weights(self) -> NDArray[np.float64]:
        return self.weights[self.folds]

    def describe(self) -> dict[str, Any]:
        out = {"members": list(self.members), "member_auc": self.member_auc,
               "cross_fitted_auc": self.cross_fitted_auc,
               "weights": dict(zip(self.members, np.round(self.weights.mean(0), 4).tolist())),
               "weights_by_fold": np.round(self.weights, 4).tolist(), "n_folds": int(len(self.weights))}
        if self.member_agreement is not None:
            out.update(rule=AGREEMENT_RULE, member_agreement=self.member_agreement,
                       cross_fitted_agreement=self.cross_fitted_agreement)
        return out


AGREEMENT_RULE = ("the weights that track human agreement best (Spearman, rows whose label was not flipped) among "
                  "those that find the injected flips at least as well as the best single member")


def _spearmans(scores: NDArray[np.float64], agreement: NDArray[np.float64]) -> NDArray[np.float64]:
    """Spearman's rho of each row of `scores` (k, n) with `agreement` (n,), average ranks for ties."""
    from scipy.stats import rankdata

    ra = rankdata(agreement)
    ra = ra - ra.mean()
    rs = rankdata(scores, axis=1)
    rs = rs - rs.mean(1, keepdims=True)
    den = np.sqrt((rs**2).sum(1) * (ra**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, rs @ ra / den, np.nan)


def self_check_weights(ranks: Mapping[str, NDArray[np.floating]], injected: NDArray[np.bool_], *, n_folds: int = 5,
                       seed: int = 0, agreement: NDArray[np.floating] | None = None) -> SelfCheckWeights:
    """Cross-fitted weights of a rank average from each member's ranks on a copy with injected flips.

    Args:
        ranks: Member name -> normalised ranks (n,) of its values on the copy whose `injected` rows were flipped.
        injected: (n,) True where the copy's label was flipped.
        n_folds: Rows are split into this many folds (by the seed only); the weights of the rows of fold f
            maximise the ROC-AUC of low weighted rank for the injected flips of the other folds (over a simplex
            grid; ties go to the weights nearest to equal), so a row's own flip never trains its weight.
        agreement: (n,) human agreement with each row's given label (e.g. the share of annotators who chose it;
            NaN where unknown), or None. When given, the weights of fold f are the ones that track agreement best
            (Spearman's rho on the other folds' rows whose label was not flipped, where a rank on the copy still
            judges the label people judged) among those whose injected-flip AUC on the other folds is at least the
            best single member's there. A row's own agreement, like its own flip, never trains its weight.

    Returns:
        The weights per fold, the fold of each row, each member's AUC (and Spearman with agreement) and the
        cross-fitted consensus' AUC (and Spearman).
    """
    names = tuple(ranks)
    R = np.vstack([np.asarray(ranks[k], dtype=np.float64) for k in names])  # (m, n)
    injected = np.asarray(injected, dtype=bool)
    m, n = R.shape
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(13,)))
    folds = np.empty(n, dtype=np.int64)
    folds[rng.permutation(n)] = np.arange(n) % n_folds  # from the seed and n only, never from the flips
    grid = simplex_grid(m)
    near_equal = -np.abs(grid - 1.0 / m).sum(1)  # tie-break: prefer weights near equal
    vertex = [int(np.flatnonzero(np.isclose(grid[:, j], 1.0))[0]) for j in range(m)]  # single members
    people = None
    if agreement is not None:
        a = np.asarray(agreement, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"agreement has shape {a.shape}; expected ({n},)")
        people = np.isfinite(a) & ~injected
    W = np.empty((n_folds, m))
    for f in range(n_folds):
        tr = folds != f
        auc = _aucs(-(grid @ R[:, tr]), injected[tr])
        auc = np.round(np.nan_to_num(auc, nan=0.5), 6)
        if people is not None and (people & tr).sum() >= 3:
            ok = auc >= auc[vertex].max()
            rho = np.round(np.nan_to_num(_spearmans(grid[ok] @ R[:, people & tr], a[people & tr]), nan=-1.0), 6)
            cand = np.flatnonzero(ok)
            best = cand[np.lexsort((near_equal[ok], auc[ok], rho))[-1]]
        else:
            best = np.lexsort((near_equal, auc))[-1]
        W[f] = grid[best]
    combined = (W[folds] * R.T).sum(1)
    member_auc = {k: float(x) for k, x in zip(names, _aucs(-R, injected))}
    member_agreement = cross_agreement = None
    if people is not None and people.sum() >= 3:
        member_agreement = {k: float(x) for k, x in zip(names, _spearmans(R[:, people], a[people]))}
        cross_agreement = float(_spearmans(combined[None, people], a[people])[0])
    return SelfCheckWeights(names, folds, W, member_auc, float(_aucs(-combined[None, :], injected)[0]),
                            member_agreement, cross_agreement)


def consensus(train: Split, *, valid: Split, members: Sequence[str] = DEFAULT_MEMBERS,
              member_options: Mapping[str, Mapping[str, Any]] | None = None, seed: int | None = None,
              on_progress: ProgressFn | None = None) -> Values:
    """Run each member method on (train, valid) and rank-average their values.

    Args:
        members: Registry keys of the member methods.
        member_options: Per-member keyword options, e.g. {"ts_dshapley": {"n_passes": 20}}.
        seed: Passed to every member.

    Returns:
        Values in [0, 1] with `extra["rank_<member>"]` per row.
    """
    from core.valuation import METHODS

    t0 = time.perf_counter()
    results = []
    for i, name in enumerate(members):
        def sub(f: float, msg: str, partial: Any = None, i: int = i) -> None:
            if on_progress:
                on_progress((i + f) / len(members), msg, None)
        opts = dict((member_options or {}).get(name, {}))
        results.append(METHODS[name](train, valid=valid, seed=seed, on_progress=sub, **opts))
    return combine(results, params={"seed": seed}, seconds=time.perf_counter() - t0)
