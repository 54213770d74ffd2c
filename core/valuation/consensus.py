"""Consensus: the rank average of several valuation methods (Winnow's own).

No single detector of harmful rows wins on every data set; the mean of each member's normalised rank (0 = the
member's lowest value, 1 = its highest) did better than the best member on both data sets measured (DESIGN.md).
The result keeps every member's rank per row (`extra["rank_<member>"]`), so the app can say which signals call a
row harmful. Values lie in [0, 1]: a rank, not a Shapley value (0.5 is the median row); higher = more helpful.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from core.valuation.base import ProgressFn, Split, Values

DEFAULT_MEMBERS = ("label_quality", "knn_shapley", "data_oob", "ts_dshapley")


def normalised_rank(values: NDArray[np.floating]) -> NDArray[np.float64]:
    """Average-tie ranks scaled to [0, 1] (0: lowest value)."""
    n = len(values)
    if n < 2:
        return np.full(n, 0.5)
    _, inverse, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank of each distinct value's first row
    return (first + (counts - 1) / 2.0)[inverse] / (n - 1.0)


def combine(members: Sequence[Values], *, params: dict[str, Any] | None = None, seconds: float | None = None
            ) -> Values:
    """Rank-average member results over the same uids (aligned to the first member's order)."""
    base = members[0]
    ranks = {}
    for v in members:
        pos = {u: i for i, u in enumerate(v.uids)}
        idx = np.array([pos[u] for u in base.uids])
        ranks[v.method] = normalised_rank(v.values[idx])
    R = np.vstack(list(ranks.values()))  # (members, n)
    m = R.shape[0]
    se = R.std(0, ddof=1) / np.sqrt(m) if m > 1 else np.full(R.shape[1], np.nan)
    p = {"members": [v.method for v in members], "scale": "mean normalised rank in [0, 1]"}
    p.update(params or {})
    p["member_params"] = {v.method: v.params for v in members}
    return Values(uids=np.asarray(base.uids), values=R.mean(0), stderr=se, counts=np.full(R.shape[1], m, np.int64),
                  method="consensus", params=p,
                  seconds=float(sum(v.seconds for v in members)) if seconds is None else seconds,
                  extra={f"rank_{k}": r for k, r in ranks.items()})


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
