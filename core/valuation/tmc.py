"""TMC-Shapley: truncated Monte Carlo Shapley values on the whole training set.

Ghorbani & Zou. *Data Shapley: Equitable Valuation of Data for Machine Learning*, ICML 2019, arXiv 1904.02868.
Permutations of all training rows; along each, the source classifier of TS-DShapley (incremental ridge by
default) is scored on the validation rows after every prefix, and a permutation is truncated once the prefix is
within `truncation` of the full set's utility. Cost grows with n^2, so it is for small data and as the reference
that TS-DShapley approximates. Permutations run in batches until `max_permutations` or until the values converge
(mean standard error below `convergence` times the mean absolute value).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from core.errors import DataError
from core.valuation.base import Option, ProgressFn, Split, Values, checked, values_from_samples
from core.valuation.ts_dshapley import (CLASSIFIER, N_COMPONENTS, RIDGE_ALPHA, TRUNCATION, UTILITY, Classifier,
                                        Utility, _default_tolerance, _rng, check_classes, check_finite,
                                        full_utility, run_chains, source_features)


@checked(Option("max_permutations", int, "permutations at most", low=1, high=10_000_000),
         CLASSIFIER, UTILITY, N_COMPONENTS, RIDGE_ALPHA, TRUNCATION)
def tmc_shapley(train: Split, *, valid: Split, max_permutations: int = 1000, min_permutations: int = 100,
                batch_permutations: int = 50, convergence: float = 0.05, classifier: Classifier = "ridge",
                utility: Utility = "accuracy", n_components: int | None = 32, ridge_alpha: float = 10.0,
                C: float = 1.0, truncation: float | None = None, min_truncation_fraction: float = 0.1,
                seed: int | None = None, continue_from: Values | None = None,
                on_progress: ProgressFn | None = None) -> Values:
    """Truncated Monte Carlo Shapley values of the source classifier over the whole training set.

    Args:
        max_permutations: Upper bound on permutations; min_permutations: lower bound before convergence counts.
        batch_permutations: Permutations computed as one vectorised batch (and between convergence checks).
        convergence: Stop when mean(stderr) < convergence * mean(|value|); 0 runs `max_permutations`.
        classifier, utility, n_components, ridge_alpha, C: As in `ts_dshapley`.
        truncation: As in `ts_dshapley` (None: max(0.01, 1/|V|); 0: none), never before
            `min_truncation_fraction` of the rows.
        seed: Permutation b draws from SeedSequence(seed, spawn_key=(b,)).
        continue_from: Partial Values from `on_progress`; its permutations are kept and not redrawn.

    Returns:
        Values (mean marginal contribution per row, stderr over permutations, count = permutations).
    """
    t0 = time.perf_counter()
    check_finite(train)
    check_finite(valid, "validation embeddings")
    check_classes(train, valid)
    if len(train) < 2:
        raise DataError("TMC-Shapley needs at least 2 training rows")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    n = len(train)
    n_classes = int(max(train.y.max(), valid.y.max()) + 1)
    tol = _default_tolerance(len(valid)) if truncation is None else float(truncation)
    params: dict[str, Any] = dict(max_permutations=max_permutations, min_permutations=min_permutations,
                                  batch_permutations=batch_permutations, convergence=convergence,
                                  classifier=classifier, utility=utility, n_components=n_components,
                                  ridge_alpha=ridge_alpha, C=C, truncation=tol,
                                  min_truncation_fraction=min_truncation_fraction, seed=int(seed),
                                  n_valid=len(valid))
    Z, Zv = source_features(train.X, valid.X, n_components=n_components)
    v_full = full_utility(Z, train.y, Zv, valid.y, n_classes=n_classes, classifier=classifier, utility=utility,
                          alpha=ridge_alpha, C=C)
    sums, sumsq = np.zeros(n), np.zeros(n)
    done = 0
    elapsed0 = 0.0
    if continue_from is not None:
        pos = {u: i for i, u in enumerate(continue_from.uids)}
        idx = np.array([pos[u] for u in train.uids])
        c = continue_from.counts[idx].astype(float)
        m = continue_from.values[idx]
        se = np.nan_to_num(continue_from.stderr[idx])
        sums = m * c
        sumsq = (se**2) * c * np.maximum(c - 1, 0) + c * m**2
        done = int(c.max()) if len(c) else 0
        elapsed0 = continue_from.seconds

    def result(sec: float) -> Values:
        return values_from_samples(train.uids, sums, sumsq, np.full(n, done), method="tmc_shapley",
                                   params=params, seconds=sec)

    while done < max_permutations:
        b = min(batch_permutations, max_permutations - done)
        orders = np.stack([train_perm for train_perm in
                           (_rng(int(seed), done + i).permutation(n) for i in range(b))])
        marg = run_chains(Z, train.y, Zv, valid.y, orders, np.full(b, v_full), n_classes=n_classes,
                          classifier=classifier, utility=utility, alpha=ridge_alpha, C=C, tolerance=tol,
                          min_steps=int(np.ceil(min_truncation_fraction * n)))
        per_row = np.zeros((b, n))
        np.put_along_axis(per_row, orders, marg, axis=1)
        sums += per_row.sum(0)
        sumsq += (per_row**2).sum(0)
        done += b
        partial = result(elapsed0 + time.perf_counter() - t0)
        if on_progress:
            on_progress(done / max_permutations, f"tmc-shapley: {done} permutations", partial)
        if convergence > 0 and done >= min_permutations:
            if np.nanmean(partial.stderr) < convergence * np.mean(np.abs(partial.values)):
                break
    return result(elapsed0 + time.perf_counter() - t0)
