"""Data-OOB: the out-of-bag accuracy of bagged classifiers on each training row.

Kwon & Zou. *Data-OOB: Out-of-bag Estimate as a Simple and Efficient Data Value*, ICML 2023, arXiv 2304.07718.
`n_estimators` bootstrap samples each train a weak learner (here multinomial logistic regression on the PCA-32
standardised embeddings); a row's value is the mean, over the learners that did not see it, of 1[prediction equals
its label]. Values lie in [0, 1] (not a Shapley value, so 0 is not "neutral"): higher = more helpful.

All bootstrap models are fitted at once: bootstrap multiplicities become sample weights of one separable objective
(sum of the B weighted, L2-penalised cross-entropies), minimised jointly with L-BFGS. Its minimiser is each
learner's own optimum, and one vectorised pass costs a single (n, d) x (d, B c) product.
"""
from __future__ import annotations

import time

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError
from core.valuation.base import Option, ProgressFn, Split, Values, checked
from core.valuation.source import check_finite, source_features


def fit_bagged_logistic(Z: NDArray[np.float64], y: NDArray[np.int64], weights: NDArray[np.float64], *,
                        n_classes: int, C: float = 1.0, max_iter: int = 300) -> NDArray[np.float64]:
    """Fit B weighted L2 logistic regressions at once; weights (B, n). Returns W (B, d + 1, c) (last row: bias).

    The objective of model b is sum_i w_bi CE(x_i, y_i) + ||W_b[:-1]||^2 / (2 C) (softmax over the classes),
    which for two classes is scikit-learn's binary logistic regression.
    """
    from scipy.optimize import minimize

    n, d = Z.shape
    B = weights.shape[0]
    A = np.hstack([Z, np.ones((n, 1))])
    Y = np.eye(n_classes)[y]  # (n, c)
    pen = np.ones((d + 1, 1))
    pen[-1] = 0.0  # no penalty on the bias
    # two classes: the symmetric optimum has w1 = -w0 = w/2, so doubling the penalty gives scikit-learn's ||w||^2/2C
    lam = (2.0 if n_classes == 2 else 1.0) / C

    def f(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        W = w.reshape(d + 1, B, n_classes)
        logits = (A @ W.reshape(d + 1, B * n_classes)).reshape(n, B, n_classes)
        logits -= logits.max(-1, keepdims=True)
        expl = np.exp(logits)
        Zs = expl.sum(-1, keepdims=True)
        logp = logits - np.log(Zs)
        wT = weights.T[:, :, None]  # (n, B, 1)
        loss = -(wT * logp * Y[:, None, :]).sum()
        G = wT * (expl / Zs - Y[:, None, :])  # (n, B, c)
        grad = (A.T @ G.reshape(n, B * n_classes)).reshape(d + 1, B, n_classes)
        loss += lam * (pen[:, :, None] * W**2).sum() / 2
        grad += lam * pen[:, :, None] * W
        return float(loss), grad.ravel()

    res = minimize(f, np.zeros((d + 1) * B * n_classes), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": 1e-6})
    return res.x.reshape(d + 1, B, n_classes).transpose(1, 0, 2)


@checked(Option("n_estimators", int, "bootstrap models", low=1, high=100_000, label="Bootstrap models"),
         Option("n_components", int, "PCA dimensions of the features", low=1, none_ok=True))
def data_oob(train: Split, *, valid: Split | None = None, n_estimators: int = 200, n_components: int | None = 32,
             C: float = 1.0, seed: int | None = None, on_progress: ProgressFn | None = None) -> Values:
    """Out-of-bag accuracy of `n_estimators` bootstrap logistic regressions on each training row.

    Args:
        valid: Unused (Data-OOB needs no validation set); accepted for a uniform interface.
        n_estimators: Bootstrap samples (weak learners).
        n_components: PCA dimensions fitted on the training rows (None keeps the embedding), then standardised.
        C: Inverse L2 penalty of each logistic regression.
        seed: Seeds the bootstrap draws.

    Returns:
        Values in [0, 1]; stderr is the standard error over the out-of-bag learners, count their number.
    """
    t0 = time.perf_counter()
    check_finite(train)
    if len(np.unique(train.y)) < 2:
        raise DataError("Data-OOB needs at least two classes in the training rows")
    rng = np.random.default_rng(seed)
    n = len(train)
    if n_components is None:
        Z = np.asarray(train.X, dtype=np.float64)
    else:
        (Z,) = source_features(train.X, n_components=n_components)
    n_classes = int(train.y.max() + 1)
    weights = np.zeros((n_estimators, n))
    for b in range(n_estimators):
        np.add.at(weights[b], rng.integers(0, n, n), 1.0)
    if on_progress:
        on_progress(0.05, "data-oob: fitting bootstrap models", None)
    W = fit_bagged_logistic(Z, train.y, weights, n_classes=n_classes, C=C)
    A = np.hstack([Z, np.ones((n, 1))])
    pred = np.einsum("nd,bdc->bnc", A, W).argmax(-1)  # (B, n)
    correct = (pred == train.y[None, :]).astype(np.float64)
    oob = weights == 0
    counts = oob.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, (correct * oob).sum(0) / np.maximum(counts, 1), 0.5)
        var = np.where(counts > 1, ((correct - mean) ** 2 * oob).sum(0) / np.maximum(counts - 1, 1), np.nan)
        se = np.where(counts > 1, np.sqrt(var / np.maximum(counts, 1)), np.nan)
    if on_progress:
        on_progress(1.0, "data-oob: done", None)
    return Values(uids=np.asarray(train.uids), values=mean, stderr=se, counts=counts.astype(np.int64),
                  method="data_oob",
                  params={"n_estimators": n_estimators, "n_components": n_components, "C": C, "seed": seed,
                          "scale": "out-of-bag accuracy in [0, 1]"},
                  seconds=time.perf_counter() - t0)
