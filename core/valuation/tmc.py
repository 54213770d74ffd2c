"""TMC-Shapley: truncated Monte Carlo Shapley values on the whole training set.

Ghorbani & Zou. *Data Shapley: Equitable Valuation of Data for Machine Learning*, ICML 2019, arXiv 1904.02868.
Permutations of all training rows; along each, the source classifier of TS-DShapley (incremental ridge by
default) is scored on the validation rows after every prefix, and a permutation is truncated once the prefix is
within `truncation` of the full set's utility. Cost grows with n^2, so it is for small data and as the reference
that TS-DShapley approximates, which runs the same batched chains (`run_chains`) on small subsets. Permutations run in batches until `max_permutations` or until the values converge
(mean standard error below `convergence` times the mean absolute value).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError
from core.valuation.base import Option, ProgressFn, Split, Values, checked, values_from_samples
from core.valuation.source import (CLASSIFIER, N_COMPONENTS, RIDGE_ALPHA, TRUNCATION, UTILITY, Classifier, Utility,
                                   augment, check_classes, check_finite, constant_utility, default_tolerance,
                                   full_utility, logistic_fit_utility, score_utility, seeded_rng, source_features)

_STEP_CHUNK = 16  # prefixes scored per matrix product


def run_chains(Z: NDArray[np.float64], y: NDArray[np.int64], Zv: NDArray[np.float64], yv: NDArray[np.int64],
               orders: NDArray[np.int64], v_full: NDArray[np.float64], *, n_classes: int,
               classifier: Classifier = "ridge", utility: Utility = "accuracy", alpha: float = 1.0,
               C: float = 1.0, tolerance: float = 0.01, min_steps: int = 0) -> NDArray[np.float64]:
    """Marginal contributions along many permutations at once.

    Args:
        Z, y: Source features (n, d) and labels (n,) of the rows the orders index.
        Zv, yv: Validation features and labels.
        orders: (chains, L) row indices; -1 pads a shorter permutation (a no-op step).
        v_full: (chains,) utility of each chain's whole set, for truncation.
        tolerance: A chain stops once |v_full - v(prefix)| < tolerance, never before `min_steps` rows.

    Returns:
        (chains, L) marginal contributions v(prefix_t) - v(prefix_{t-1}); 0 after truncation and on padding.
    """
    if classifier == "logistic":
        return _logistic_chains(Z, y, Zv, yv, orders, v_full, n_classes=n_classes, utility=utility, C=C,
                                tolerance=tolerance, min_steps=min_steps)
    n_chains, L = orders.shape
    Zp = np.vstack([augment(Z), np.zeros((1, Z.shape[1] + 1))])  # row n = padding (zero: a no-op update)
    Yp = np.vstack([np.eye(n_classes)[y], np.zeros((1, n_classes))])
    orders = np.where(orders < 0, len(Z), orders)
    dd = Zp.shape[1]
    nv = len(yv)
    v_empty = constant_utility(yv, n_classes, utility)
    ZvA = augment(Zv)
    if utility == "accuracy":  # validation rows grouped by label, float32: see _prefix_accuracy
        by_class = [(k, np.ascontiguousarray(ZvA[yv == k].T, dtype=np.float32)) for k in range(n_classes)
                    if (yv == k).any()]

    alive = np.arange(n_chains)
    Ainv = np.broadcast_to(np.eye(dd) / alpha, (n_chains, dd, dd)).copy()
    W = np.zeros((n_chains, dd, n_classes))  # ridge weights of the current prefix
    seen = np.zeros((n_chains, n_classes))
    prev = np.full(n_chains, v_empty)
    marg = np.zeros((n_chains, L))
    outer = np.empty_like(Ainv)
    for t0 in range(0, L, _STEP_CHUNK):
        t1 = min(L, t0 + _STEP_CHUNK)
        T = t1 - t0
        Ws = np.empty((len(alive), T, dd, n_classes))
        multi = np.empty((len(alive), T), dtype=bool)
        for t in range(t0, t1):
            idx = orders[alive, t]
            x = Zp[idx]
            yo = Yp[idx]
            u = np.einsum("cij,cj->ci", Ainv, x)
            kappa = 1.0 + np.einsum("ci,ci->c", x, u)
            r = (yo - np.einsum("cjk,cj->ck", W, x)) / kappa[:, None]  # scaled residual of the new row
            W += u[:, :, None] * r[:, None, :]
            uk = np.einsum("ci,cj->cij", u, u / kappa[:, None], out=outer[: len(alive)])
            Ainv -= uk
            seen += yo
            Ws[:, t - t0] = W
            multi[:, t - t0] = (seen > 0).sum(1) >= 2
        # every prefix of the chunk scored at once: one matrix product
        if utility == "accuracy":
            util = _prefix_accuracy(Ws.reshape(-1, dd, n_classes), by_class, nv).reshape(len(alive), T)
        else:
            S = (ZvA @ Ws.transpose(2, 0, 1, 3).reshape(dd, -1)).reshape(nv, len(alive), T, n_classes)
            util = score_utility(S.transpose(1, 2, 0, 3), yv, utility)
        v = np.where(multi, util, v_empty)
        m = np.diff(np.concatenate([prev[:, None], v], axis=1), axis=1)
        steps = np.arange(t0 + 1, t1 + 1)  # prefix lengths
        can = (steps >= min_steps) & (steps < L)
        hit = (np.abs(v_full[alive][:, None] - v) < tolerance) & can[None, :]
        first = np.where(hit.any(1), hit.argmax(1), T)  # the step after which a chain is truncated
        m[np.arange(T)[None, :] > first[:, None]] = 0.0
        marg[alive, t0:t1] = m
        prev = v[:, -1]
        keep = first == T
        if not keep.all():
            alive, Ainv, W, seen, prev = alive[keep], Ainv[keep], W[keep], seen[keep], prev[keep]
            if len(alive) == 0:
                break
    return marg


def _prefix_accuracy(W: NDArray[np.float64], by_class: list[tuple[int, NDArray[np.float32]]], nv: int
                     ) -> NDArray[np.float64]:
    """Validation accuracy of many ridge weight sets W (m, d', c) at once.

    A row of class k is right when its score for k beats every other class c (argmax ties go to the lower
    index): Zv_k (W_c - W_k) < 0 for c < k and <= 0 for c > k. One float32 product per (k, c) pair, so the work is
    |V| (c - 1) d' per weight set instead of materialising all |V| c scores.
    """
    m, _, c = W.shape
    W32 = W.astype(np.float32)
    correct = np.zeros(m, dtype=np.int64)
    for k, ZkT in by_class:
        ok = None
        for c2 in range(c):
            if c2 == k:
                continue
            D = (W32[:, :, c2] - W32[:, :, k]) @ ZkT  # (m, |V_k|)
            cond = D < 0 if c2 < k else D <= 0
            ok = cond if ok is None else np.logical_and(ok, cond, out=ok)
        correct += np.count_nonzero(ok, axis=1)
    return correct / nv


def _logistic_chains(Z, y, Zv, yv, orders, v_full, *, n_classes, utility, C, tolerance, min_steps):
    n_chains, L = orders.shape
    v_empty = constant_utility(yv, n_classes, utility)
    marg = np.zeros((n_chains, L))
    for c in range(n_chains):
        order = orders[c][orders[c] >= 0]
        prev, model = v_empty, None
        for t in range(len(order)):
            v, model = logistic_fit_utility(Z[order[: t + 1]], y[order[: t + 1]], Zv, yv, n_classes, utility,
                                             C, model)
            marg[c, t] = v - prev
            prev = v
            if t + 1 >= min_steps and abs(v_full[c] - v) < tolerance:
                break
    return marg



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
    tol = default_tolerance(len(valid)) if truncation is None else float(truncation)
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
                           (seeded_rng(int(seed), done + i).permutation(n) for i in range(b))])
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
