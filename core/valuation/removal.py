"""The removal-index search: how many of the lowest-valued rows to drop (TS-DShapley's "transfer" step).

Schoch, Mishra, Ji, arXiv 2306.10165: remove the lowest-valued data up to an optimal removal index found with the
source classifier, then fine-tune the target model on the rest. Winnow sorts the values ascending, tries the
candidate fractions {0, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30} % plus the point where values cross 0, refits the
source classifier on each remainder and scores it on a second validation split (not the rows that produced the
values: that overfits) or, without one, by 3-fold over the validation rows; the best score wins, ties going to the
smaller removal. The curve also carries highest-first and random removal at the same counts, the sanity check that
lowest-first removal keeps or raises accuracy while highest-first lowers it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
from numpy.typing import NDArray

from core.errors import DataError, WinnowWarning
from core.valuation.base import Split, Values
from core.valuation.source import logistic_fit_utility, ridge_utility, source_features

FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.10, 0.15, 0.20, 0.30)


@dataclass(frozen=True)
class RemovalSuggestion:
    """The recommended removal and the validation curve behind it."""

    n_remove: int  # rows to remove, lowest value first
    fraction: float  # n_remove / n
    uids: NDArray[np.str_]  # the rows to remove
    score: float  # score of the proxy refitted on the remainder
    baseline: float  # score with nothing removed
    curve: list[dict[str, Any]]  # one dict per candidate: fraction, n_removed, score, score_highest, score_random
    scoring: str  # "second split" or "3-fold over V"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"n_remove": self.n_remove, "fraction": self.fraction, "score": self.score,
                "baseline": self.baseline, "curve": self.curve, "scoring": self.scoring, "warnings": self.warnings}


def _fit_score(Z: NDArray[np.float64], y: NDArray[np.int64], folds: Sequence[tuple[NDArray, NDArray]], *,
               n_classes: int, classifier: str, alpha: float, C: float) -> float:
    scores = []
    for Zs, ys in folds:
        if classifier == "ridge":
            scores.append(ridge_utility(Z, y, Zs, ys, n_classes=n_classes, alpha=alpha))
        else:
            scores.append(logistic_fit_utility(Z, y, Zs, ys, n_classes, "accuracy", C, None)[0])
    return float(np.mean(scores))


def suggest_removal(train: Split, values: Values, *, valid: Split, score_on: Split | None = None,
                    fractions: Sequence[float] = FRACTIONS, classifier: Literal["ridge", "logistic"] = "ridge",
                    n_components: int | None = 32, ridge_alpha: float = 10.0, C: float = 1.0,
                    n_random: int = 3, seed: int | None = 0) -> RemovalSuggestion:
    """Find the best number of lowest-valued training rows to remove.

    Args:
        train: The valued rows (any order; matched to `values` by uid).
        values: Their values (lower = remove first).
        valid: The validation rows that produced the values; used (3 stratified folds, averaged) only when
            `score_on` is None, which is optimistic.
        score_on: A second validation split to score each remainder on (preferred).
        fractions: Candidate removal fractions; the zero crossing (count of negative values) is added.
        classifier: The proxy refitted on each remainder: the ridge source classifier or logistic regression.
        n_components: PCA dimensions fitted on the training rows, as for the values.
        n_random: Random removals averaged for the random baseline (0: skip).
        seed: Seeds the folds and the random baseline.

    Returns:
        The suggestion; warns (WinnowWarning) when the removal would leave a class below half its share.
    """
    pos = {u: i for i, u in enumerate(values.uids)}
    try:
        v = values.values[np.array([pos[u] for u in train.uids])]
    except KeyError as e:
        raise DataError(f"row {e.args[0]} has no value; value the dataset first") from None
    n = len(train)
    n_classes = int(max(train.y.max(), valid.y.max(), -1 if score_on is None else score_on.y.max()) + 1)
    target = score_on if score_on is not None else valid
    Z, Zt = source_features(train.X, target.X, n_components=n_components)
    rng = np.random.default_rng(seed)
    if score_on is not None:
        folds = [(Zt, target.y)]
        scoring = "second split"
    else:
        from sklearn.model_selection import StratifiedKFold

        k = int(min(3, np.bincount(target.y)[np.bincount(target.y) > 0].min()))
        if k < 2:
            folds = [(Zt, target.y)]
        else:
            skf = StratifiedKFold(k, shuffle=True, random_state=int(rng.integers(2**31)))
            folds = [(Zt[te], target.y[te]) for _, te in skf.split(Zt, target.y)]
        scoring = "3-fold over V"
    order = np.argsort(v, kind="stable")  # ascending: lowest first
    counts = sorted({0} | {int(round(f * n)) for f in fractions} | {int((v < 0).sum())})
    counts = [c for c in counts if c <= n - 2]
    kw = dict(n_classes=n_classes, classifier=classifier, alpha=ridge_alpha, C=C)
    curve = []
    for c in counts:
        keep = np.sort(order[c:])
        row: dict[str, Any] = {"fraction": c / n, "n_removed": c,
                               "score": _fit_score(Z[keep], train.y[keep], folds, **kw)}
        if c > 0:
            keep_hi = np.sort(order[: n - c])
            row["score_highest"] = _fit_score(Z[keep_hi], train.y[keep_hi], folds, **kw)
            if n_random:
                row["score_random"] = float(np.mean([
                    _fit_score(Z[np.sort(p[c:])], train.y[np.sort(p[c:])], folds, **kw)
                    for p in (rng.permutation(n) for _ in range(n_random))]))
        else:
            row["score_highest"] = row["score_random"] = row["score"]
        curve.append(row)
    best = max(range(len(curve)), key=lambda i: (curve[i]["score"], -curve[i]["n_removed"]))
    n_remove = curve[best]["n_removed"]
    msgs = []
    if n_remove:
        full = np.bincount(train.y, minlength=n_classes) / n
        rest = np.bincount(train.y[order[n_remove:]], minlength=n_classes) / (n - n_remove)
        for c in np.flatnonzero((full > 0) & (rest < 0.5 * full)):
            msgs.append(f"removing {n_remove} rows leaves class code {c} at {rest[c]:.1%} of the rows "
                        f"(was {full[c]:.1%}): below half its share")
    for m in msgs:
        warnings.warn(m, WinnowWarning, stacklevel=2)
    return RemovalSuggestion(n_remove=n_remove, fraction=n_remove / n, uids=np.asarray(train.uids)[order[:n_remove]],
                             score=curve[best]["score"], baseline=curve[0]["score"], curve=curve, scoring=scoring,
                             warnings=msgs)


def curve_caption(curve: Sequence[dict[str, Any]], suggested_fraction: float | None = None) -> str:
    """What the removal curve shows, in words that agree with its data.

    The lowest-valued rows are the ones to remove only up to a point: past the harmful rows the lowest values tend
    to fall on hard or minority-class rows that the classifier needs, and removing them can score *below* removing
    the highest-valued (redundant, easy) rows. The caption says where that happens in this run.
    """
    pts = [r for r in curve if r.get("n_removed", 0) > 0 and "score_highest" in r]
    if not pts:
        return "The curve needs at least one removal share above 0."
    first = curve[0].get("score")
    parts = []
    if suggested_fraction is not None:
        at = min(curve, key=lambda r: abs(r["fraction"] - suggested_fraction))
        parts.append(f"Removing the lowest-valued {100 * at['fraction']:.1f} % (the suggestion) scores "
                     f"{at['score']:.4f} against {first:.4f} with nothing removed.")
    below = [r for r in pts if r["score"] < r["score_highest"]]
    if below:
        x = below[0]["fraction"]
        parts.append(f"From {100 * x:.0f} % removed on, lowest-first scores below highest-first: past the harmful "
                     "rows the lowest values fall on hard or minority-class rows the classifier needs, so remove "
                     "only up to the suggested point, not more.")
    else:
        parts.append("Lowest-first stays at or above highest-first at every share tried: the low values pick out "
                     "rows the classifier is better without.")
    rnd = [r for r in pts if "score_random" in r and r["score"] < r["score_random"]]
    if rnd:
        parts.append(f"It falls below random removal from {100 * rnd[0]['fraction']:.0f} % on.")
    return " ".join(parts)

