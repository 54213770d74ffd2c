"""The source classifier that TS-DShapley, TMC-Shapley, leave-one-out, the removal search and Data-OOB share:
its features (PCA, standardised), its utilities (ridge by an exact solve, logistic), the truncation default, the
input checks and the seeded random streams.

The default source classifier is ridge least squares on one-hot targets over PCA-32 standardised embeddings; the
utility is accuracy on the validation rows, or a smooth score (minus the squared error of the class scores, or the
log-likelihood of clipped linear-probability outputs).
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError
from core.valuation.base import Option, Split

Classifier = Literal["ridge", "logistic"]


Utility = Literal["accuracy", "neg_mse", "log_likelihood"]


CLASSIFIER = Option("classifier", str, "source classifier: ridge (exact incremental fits, fast) or logistic "
                    "(refitted per prefix, slow)", choices=("ridge", "logistic"), label="Source classifier")


UTILITY = Option("utility", str, "accuracy on the validation rows, or a smooth score (needs fewer passes)",
                 choices=("accuracy", "neg_mse", "log_likelihood"), label="Utility")


N_COMPONENTS = Option("n_components", int, "PCA dimensions of the source features", low=1, none_ok=True)


RIDGE_ALPHA = Option("ridge_alpha", float, "L2 penalty of the ridge source classifier", low=0)


TRUNCATION = Option("truncation", float, "truncation tolerance of a permutation (None: max(0.01, 1/|V|); 0: none)",
                    low=0, none_ok=True)


# Above this many training rows the PCA is fitted and applied block by block (one float64 copy of the training matrix
# would be 3 GB at 1M x 384); below it, scikit-learn's PCA on one float64 copy, as always. Both are the same
# computation (the covariance's eigenvectors, signs fixed as scikit-learn fixes them), to rounding.
BLOCKWISE_ROWS = 250_000
BLOCK_ROWS = 65_536


def source_features(X_train: NDArray[np.floating], *others: NDArray[np.floating],
                    n_components: int | None = 32, blockwise_rows: int = BLOCKWISE_ROWS
                    ) -> list[NDArray[np.float64]]:
    """PCA (fitted on the training rows) to `n_components` dimensions, then standardised with training statistics.

    Returns the transformed training rows followed by each array of `others`, all float64. Past `blockwise_rows`
    training rows (and 4 per dimension) the training matrix (float32 or memory-mapped) is read in blocks of
    BLOCK_ROWS rows and never copied whole: the memory beyond the input is the (n, n_components) result.
    """
    n, d = X_train.shape
    if n_components is not None and n_components < d and n > max(blockwise_rows, 4 * d):
        Z, project = _pca_blockwise(X_train, int(min(n_components, n - 1)))
        outs = [project(np.asarray(o, dtype=np.float64)) for o in others]
    else:
        from sklearn.decomposition import PCA

        Z = np.asarray(X_train, dtype=np.float64)
        outs = [np.asarray(o, dtype=np.float64) for o in others]
        if n_components is not None and n_components < d and n > 2:
            k = int(min(n_components, n - 1))
            pca = PCA(n_components=k, svd_solver="covariance_eigh" if n > 4 * d else "full")
            Z = pca.fit_transform(Z)
            outs = [pca.transform(o) for o in outs]
    mu = Z.mean(0)
    sd = Z.std(0)
    sd[sd < 1e-12] = 1.0
    return [(Z - mu) / sd] + [(o - mu) / sd for o in outs]


def _pca_blockwise(X: NDArray[np.floating], k: int) -> tuple[NDArray[np.float64], Any]:
    """scikit-learn's covariance_eigh PCA, reading X in row blocks: (the projected rows, a projector for others)."""
    n, d = X.shape
    from core.chunked import release_pages

    mean = np.zeros(d)
    for i in range(0, n, BLOCK_ROWS):
        mean += np.asarray(X[i:i + BLOCK_ROWS], dtype=np.float64).sum(0)
        release_pages(X)
    mean /= n
    cov = np.zeros((d, d))
    for i in range(0, n, BLOCK_ROWS):
        B = np.asarray(X[i:i + BLOCK_ROWS], dtype=np.float64) - mean
        cov += B.T @ B
        release_pages(X)
    cov /= n - 1
    evals, evecs = np.linalg.eigh(cov)
    comps = evecs[:, np.argsort(evals)[::-1][:k]].T  # (k, d), largest variance first
    big = np.argmax(np.abs(comps), axis=1)  # svd_flip(u_based_decision=False): the largest entry of each is > 0
    comps *= np.sign(comps[np.arange(k), big])[:, None]

    def project(A: NDArray[np.float64]) -> NDArray[np.float64]:
        return (A - mean) @ comps.T

    Z = np.empty((n, k))
    for i in range(0, n, BLOCK_ROWS):
        Z[i:i + BLOCK_ROWS] = project(np.asarray(X[i:i + BLOCK_ROWS], dtype=np.float64))
        release_pages(X)
    return Z, project


def augment(Z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.hstack([Z, np.ones((Z.shape[0], 1))])


def constant_utility(yv: NDArray[np.int64], n_classes: int, utility: str) -> float:
    """Utility of the best constant predictor on the validation rows (empty or one-class prefix)."""
    prior = np.bincount(yv, minlength=n_classes) / len(yv)
    if utility == "accuracy":
        return float(prior.max())
    if utility == "neg_mse":
        onehot = np.eye(n_classes)[yv]
        return float(-((prior[None, :] - onehot) ** 2).sum(1).mean())
    return float(np.log(np.maximum(prior[yv], 1e-12)).mean())


def score_utility(S: NDArray[np.float64], yv: NDArray[np.int64], utility: str) -> NDArray[np.float64]:
    """Utility of class scores S (..., |V|, c) against labels yv; returns (...)."""
    c = S.shape[-1]
    if utility == "accuracy":
        return (S.argmax(-1) == yv).mean(-1)
    if utility == "neg_mse":
        onehot = np.eye(c)[yv]
        return -((S - onehot) ** 2).sum(-1).mean(-1)
    P = np.clip(S, 1e-3, None)  # linear-probability outputs, clipped and renormalised
    P = P / P.sum(-1, keepdims=True)
    return np.log(np.take_along_axis(P, np.broadcast_to(yv[:, None], P.shape[:-1] + (1,)), -1)[..., 0]).mean(-1)


def ridge_utility(Z: NDArray[np.float64], y: NDArray[np.int64], Zv: NDArray[np.float64], yv: NDArray[np.int64],
                  *, n_classes: int, alpha: float = 1.0, utility: Utility = "accuracy") -> float:
    """Utility of the ridge source classifier fitted on (Z, y) and scored on (Zv, yv), by a direct solve.

    An empty or one-class training set scores the best constant predictor (for accuracy: the majority-class rate).
    This is the exact function whose Shapley values the incremental chains estimate (used by tests and removal).
    """
    if len(y) == 0 or len(np.unique(y)) < 2:
        return constant_utility(yv, n_classes, utility)
    A = augment(Z)
    G = A.T @ A + alpha * np.eye(A.shape[1])
    W = np.linalg.solve(G, A.T @ np.eye(n_classes)[y])
    return float(score_utility(augment(Zv) @ W, yv, utility))


def logistic_fit_utility(Z, y, Zv, yv, n_classes, utility, C, model):
    if len(np.unique(y)) < 2:
        return constant_utility(yv, n_classes, utility), model
    from sklearn.linear_model import LogisticRegression

    if model is None:
        model = LogisticRegression(C=C, max_iter=200, warm_start=True)
    if len(model.classes_ if hasattr(model, "classes_") else []) != len(np.unique(y)):
        model = LogisticRegression(C=C, max_iter=200, warm_start=True)  # class set grew: restart
    model.fit(Z, y)
    proba = np.zeros((len(yv), n_classes))
    proba[:, model.classes_] = model.predict_proba(Zv)
    if utility == "accuracy":
        u = float((proba.argmax(1) == yv).mean())
    elif utility == "neg_mse":
        u = float(-((proba - np.eye(n_classes)[yv]) ** 2).sum(1).mean())
    else:
        u = float(np.log(np.maximum(proba[np.arange(len(yv)), yv], 1e-12)).mean())
    return u, model


def full_utility(Z, y, Zv, yv, *, n_classes, classifier, utility, alpha, C) -> float:
    """Utility of the source classifier on all of (Z, y): the reference for truncation."""
    if classifier == "ridge":
        return ridge_utility(Z, y, Zv, yv, n_classes=n_classes, alpha=alpha, utility=utility)
    return logistic_fit_utility(Z, y, Zv, yv, n_classes, utility, C, None)[0]


def check_classes(train: Split, valid: Split) -> None:
    """Raise DataError unless train and validation hold the same classes (by integer code)."""
    tr, va = set(np.unique(train.y).tolist()), set(np.unique(valid.y).tolist())
    if tr - va:
        raise DataError(f"class code(s) {sorted(tr - va)} are in the training rows but missing from the validation "
                        f"rows; give a validation set with every class")
    if va - tr:
        raise DataError(f"class code(s) {sorted(va - tr)} are in the validation rows but not in the training rows; "
                        f"drop them from the validation set")


def check_finite(split: Split, what: str = "embeddings") -> None:
    """Raise DataError when any feature is NaN or infinite."""
    X = split.X
    bad = np.zeros(len(X), dtype=bool)
    for s in range(0, len(X), 65_536):  # in row blocks: no (n, d) mask at once (X may be memory-mapped)
        bad[s:s + 65_536] = ~np.isfinite(X[s:s + 65_536]).all(1)
    if bad.any():
        raise DataError(f"{what} contain NaN or infinite values in {int(bad.sum())} row(s) (first uid: "
                        f"{split.uids[np.flatnonzero(bad)[0]]}); re-run the embedding step")


def default_tolerance(n_valid: int) -> float:
    return max(0.01, 1.0 / n_valid)


def seeded_rng(entropy: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=tuple(key)))


def _rows64(X: NDArray[np.floating], rows: NDArray[np.int64], block: int = 65_536) -> NDArray[np.float64]:
    """X[rows] as a new float64 array, read block by block (so a float32 X is never converted whole); a memory-mapped
    X's pages leave the resident set after each block (`chunked.release_pages`): a fold's scattered rows touch the
    whole file, which would otherwise sit resident beside the float64 copy."""
    from core.chunked import release_pages

    out = np.empty((len(rows), X.shape[1]), dtype=np.float64)
    for s in range(0, len(rows), block):
        out[s:s + block] = X[rows[s:s + block]]
        release_pages(X)
    return out


def cross_fitted_proba(X: NDArray[np.floating], y: NDArray[np.integer], *, n_folds: int = 5,
                       n_classes: int | None = None, n_components: int | None = None, C: float = 1.0,
                       seed: int | None = 0) -> NDArray[np.float64]:
    """(n, n_classes) out-of-fold class probabilities of a logistic regression: each row predicted by a model that
    never saw it (`cross_val_predict` over stratified, seeded folds; fewer folds when a class is rarer).

    The one cross-fitted classifier of Winnow: label quality, the held-out split's cleaning and selection's judge.
    C = 1 (scikit-learn's default) on the embeddings as they are (unit norm) or on `n_components` PCA dimensions.

    Raises:
        DataError: A class has fewer than 2 rows.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    n_classes = int(n_classes if n_classes is not None else y.max() + 1)
    counts = np.bincount(y, minlength=n_classes)
    smallest = int(counts[counts > 0].min())
    if smallest < 2:
        raise DataError(f"cross-fitted probabilities need at least 2 rows of every class (the smallest class has "
                        f"{smallest})")
    folds = int(min(n_folds, smallest))
    proba = np.zeros((len(y), n_classes))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    # Each fold's rows are converted to float64 straight from X (which may be memory-mapped float32): no whole float64
    # copy of X besides the fold being fitted. The conversion is exact, and the folds, the models and the placement
    # of the probabilities are scikit-learn's `cross_val_predict`'s (a test checks the values are identical).
    for tr, te in cv.split(np.zeros((len(y), 1)), y):  # the split reads only y (and the row count)
        if n_components is None:
            fitted = LogisticRegression(C=C, max_iter=500).fit(_rows64(X, tr), y[tr])
            proba[np.ix_(te, fitted.classes_)] = fitted.predict_proba(_rows64(X, te))
            continue
        # PCA and scaling fitted on each training fold (source_features)
        Ztr, Zte = source_features(_rows64(X, tr), _rows64(X, te), n_components=n_components)
        fitted = LogisticRegression(C=C, max_iter=500).fit(Ztr, y[tr])
        proba[np.ix_(te, fitted.classes_)] = fitted.predict_proba(Zte)
    return proba

