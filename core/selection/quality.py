"""Quality signals for selection: rank-normalised values and the cross-fitted label confidence (the judge).

The judge of Diversify and Conquer (arXiv 2409.11378) scores an answer with an external model; for a classifier
Winnow's judge is the out-of-fold probability a logistic regression on the embeddings gives each class (5 folds), so
J(y) for the given label says how much the rest of the data supports it.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from core.valuation.base import normalised_rank as rank_normalise  # noqa: F401 - one rank normalisation
from core.valuation.source import cross_fitted_proba  # noqa: F401 - the judge J is the one cross-fitted classifier

JUDGE_C = 10.0  # inverse L2 strength of the per-round logistic regression (`fit_proba`) on unit-norm embeddings


def _logistic(C: float, seed: int | None):  # -> sklearn LogisticRegression
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=300, tol=1e-3, random_state=seed)


def predict_proba_full(model, X: NDArray[np.floating], n_classes: int) -> NDArray[np.float64]:
    """(n, n_classes) probabilities from a fitted classifier that may have seen only some classes."""
    P = np.zeros((len(X), n_classes))
    P[:, model.classes_.astype(int)] = model.predict_proba(X)
    return P


def fit_proba(X_train: NDArray[np.floating], y_train: NDArray[np.integer], X_score: NDArray[np.floating], *,
              n_classes: int, C: float = JUDGE_C, seed: int | None = 0) -> NDArray[np.float64]:
    """Train a logistic regression on (X_train, y_train) and return (len(X_score), n_classes) probabilities.

    With a single class in `y_train` the model predicts that class with certainty.
    """
    y_train = np.asarray(y_train, dtype=np.int64)
    present = np.unique(y_train)
    if len(present) < 2:
        P = np.zeros((len(X_score), n_classes))
        if len(present):
            P[:, present[0]] = 1.0
        else:
            P[:] = 1.0 / n_classes
        return P
    model = _logistic(C, seed).fit(X_train, y_train)
    return predict_proba_full(model, X_score, n_classes)


def label_confidence(X: NDArray[np.floating], y: NDArray[np.integer], **kwargs) -> NDArray[np.float64]:
    """(n,) cross-fitted p(y_given | x); see `cross_fitted_proba`."""
    y = np.asarray(y, dtype=np.int64)
    return cross_fitted_proba(X, y, **kwargs)[np.arange(len(y)), y]
