"""Label quality: cross-fitted confidence in each row's given label (cleanlab).

Northcutt, Jiang, Chuang. *Confident Learning: Estimating Uncertainty in Dataset Labels*, JAIR 2021,
arXiv 1911.00068. Out-of-fold probabilities of a logistic regression on the embeddings feed cleanlab's
`get_label_quality_scores` (self-confidence by default: the out-of-fold probability of the given label). The raw score
is kept: it lies in [0, 1] and is not a Shapley value (0 is not "neutral"), but higher = more helpful holds.
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from core.valuation.base import Option, ProgressFn, Split, Values, checked
from core.valuation.source import check_finite, cross_fitted_proba


def out_of_fold_proba(train: Split, *, n_folds: int = 5, n_components: int | None = None, C: float = 1.0,
                      seed: int | None = 0) -> NDArray[np.float64]:
    """(n, c) out-of-fold class probabilities of a logistic regression (`source.cross_fitted_proba`)."""
    return cross_fitted_proba(train.X, train.y, n_folds=n_folds, n_components=n_components, C=C, seed=seed)


@checked(Option("n_folds", int, "cross-fitting folds", low=2, high=100),
         Option("n_components", int, "PCA dimensions of the features", low=1, none_ok=True))
def label_quality(train: Split, *, valid: Split | None = None, n_folds: int = 5, n_components: int | None = None,
                  C: float = 1.0, score: Literal["self_confidence", "normalized_margin", "confidence_weighted_entropy"]
                  = "self_confidence", seed: int | None = None, on_progress: ProgressFn | None = None) -> Values:
    """cleanlab's label-quality score of every row from cross-fitted logistic-regression probabilities.

    Args:
        valid: Unused (the probabilities are cross-fitted on the training rows); accepted for a uniform interface.
        n_folds: Stratified folds for the out-of-fold probabilities.
        n_components: PCA dimensions, then standardised (None: the embeddings as they are).
        C: Inverse L2 penalty of the logistic regression.
        score: cleanlab's scoring method.
        seed: Seeds the fold split.

    Returns:
        Values in [0, 1] (raw label-quality scores; counts 1, stderr NaN).
    """
    from cleanlab.rank import get_label_quality_scores

    t0 = time.perf_counter()
    check_finite(train)
    if on_progress:
        on_progress(0.0, "label-quality: cross-fitting", None)
    proba = out_of_fold_proba(train, n_folds=n_folds, n_components=n_components, C=C, seed=seed)
    q = get_label_quality_scores(train.y, proba, method=score).astype(np.float64)
    if on_progress:
        on_progress(1.0, "label-quality: done", None)
    n = len(train)
    return Values(uids=np.asarray(train.uids), values=q, stderr=np.full(n, np.nan), counts=np.ones(n, np.int64),
                  method="label_quality",
                  params={"n_folds": n_folds, "n_components": n_components, "C": C, "score": score, "seed": seed,
                          "scale": "cleanlab label-quality score in [0, 1]"},
                  seconds=time.perf_counter() - t0)
