"""The comparison experiment: subset specs, fine-tunes over (subset x seed), checkpoints and resume.

It sits above both `core.finetune` (which trains and evaluates one model, a leaf) and `core.selection` (whose
strategies draw the kMQ subsets): `compare` resolves every subset spec against the training pool left after the
held-out split, fine-tunes each (subset, seed) with `finetune.train_and_evaluate` and records the results as a
resumable "compare" run. `target_model_train_fn` wraps the fine-tune as the `TrainFn` that selection's iterative
refinement takes as a parameter (the slow, faithful path of Diversify and Conquer, arXiv 2409.11378).

The experiment it serves is the one of TS-DShapley (Schoch, Mishra, Ji, arXiv 2306.10165) and Diversify-and-Conquer:
fine-tune on a value- or diversity-selected subset and compare with the full set and random.
"""
from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from core import decisions, finetune, runs, sampling
from core.errors import DataError
from core.finetune import DEFAULT_EVAL_FRACTION, DEFAULT_EVAL_MAX, EVAL_SPLIT_SEED, FinetuneProgress
from core.selection import removal_count, select_clean_kmq, select_iterative, select_kmq
from core.selection.store import judge_proba, load_clusters
from core.selection.strategies import TrainFn, resolve_budget
from core.valuation.store import load_values

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from core.workspace import Workspace


@dataclass(frozen=True)
class SubsetRows:
    """A resolved subset spec: the training rows (uids) and how they were chosen."""

    spec: str
    uids: list[str]
    note: str = ""


def _frame(data: Any) -> pd.DataFrame:
    """uid, text, label as str columns from a datasets.Dataset or a DataFrame."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        df = data
    else:
        df = data.select_columns(["uid", "text", "label"]).to_pandas()
    missing = [c for c in ("uid", "text", "label") if c not in df.columns]
    if missing:
        raise DataError(f"the data lacks the column(s) {missing} (found: {', '.join(map(str, df.columns))})")
    out = pd.DataFrame({"uid": df["uid"].astype(str).to_numpy(), "text": df["text"].astype(str).to_numpy(),
                        "label": df["label"].astype(str).to_numpy()})
    return out.reset_index(drop=True)


def held_out_split(labels: Sequence[str], *, fraction: float = DEFAULT_EVAL_FRACTION,
                   max_rows: int = DEFAULT_EVAL_MAX, seed: int = EVAL_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) row positions: a stratified `fraction` (at most `max_rows`) held out as the test set.

    Deterministic for the same labels and seed, so every subset and seed of an experiment sees the same test rows.
    """
    size = min(int(round(fraction * len(labels))), int(max_rows))
    return sampling.stratified_split([str(v) for v in labels], size, np.random.default_rng(seed))


def parse_subsets(text: str | Sequence[str]) -> list[str]:
    """'full,random:0.5,curated' -> ['full', 'random:0.5', 'curated'] (validated, duplicates dropped)."""
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text)]
    out: list[str] = []
    for p in parts:
        if not p:
            continue
        kind = p.split(":", 1)[0]
        if kind not in SUBSET_KINDS:
            raise DataError(f"unknown subset {p!r}; use one of: full, random:B, curated, selection:RUN_ID, "
                            "top-value:B:VALUES_RUN_ID, kmq:B, clean-kmq:B[:VALUES_RUN_ID], iterative:B "
                            "(B = a row count, a fraction like 0.5, or 30%)")
        if kind in ("random", "kmq", "iterative") and p.count(":") != 1 or kind == "selection" and p.count(":") != 1 \
                or kind == "top-value" and p.count(":") != 2 or kind in ("full", "curated") and ":" in p \
                or kind == "clean-kmq" and p.count(":") not in (1, 2):
            raise DataError(f"malformed subset {p!r}; e.g. random:0.5, selection:12, top-value:0.7:5, kmq:2000, "
                            "clean-kmq:2000, iterative:2000")
        if p not in out:
            out.append(p)
    if not out:
        raise DataError("no subsets given; e.g. --subsets full,random:0.5,curated")
    return out


SUBSET_KINDS = ("full", "random", "curated", "selection", "top-value", "kmq", "clean-kmq", "iterative")
PROTOCOLS = ("equal-steps", "equal-epochs", "convergence")
DEFAULT_PROTOCOL = "equal-steps"
# Demo defaults, sized for about 10 minutes on 2 CPU cores with MiniLM (see `estimate_seconds`): a capped training
# pool, 2 seeds, 1 epoch's worth of equal steps, a 1,000-row held-out split.
DEMO_POOL_MAX = 2000
DEMO_EVAL_MAX = 1000
DEMO_SEEDS = 2
DEMO_EPOCHS = 1


def _budget(text: str, n: int) -> int:
    return resolve_budget(text, n)


def resolve_subset(ws: Workspace | None, dataset_id: int | None, spec: str, pool: pd.DataFrame, *,
                   seed: int = 0, test_uids: Sequence[str] | None = None,
                   decisions_view: _DecisionView | None = None) -> SubsetRows:
    """The training rows of one subset spec, drawn from `pool` (the data minus the test rows).

    Specs: ``full``; ``random:B`` (B rows drawn uniformly, a new draw per seed); ``curated`` (the pool minus rows
    whose current decision is "remove"); ``selection:RUN_ID`` (a saved subset: the uids of that run's frame);
    ``top-value:B:VALUES_RUN_ID`` (the B highest-valued rows of a valuation run); ``kmq:B`` (kMQ on the newest
    clusters run of the dataset); ``clean-kmq:B[:VALUES_RUN_ID]`` (clean, then diversify: drop the significantly
    harmful rows of the valuation run, default the newest, then kMQ); ``iterative:B`` (Diversify and Conquer's
    iterative refinement, logistic-regression judge). B is a count (500), a fraction (0.5) or a percentage (30%)
    of the pool, so every budget spec gets exactly B rows.

    A saved selection keeps its size: its rows that fall in the held-out split (`test_uids`) are replaced by as
    many rows drawn at random from the pool (scaled down when the pool is capped), so it trains on as many rows as
    a random subset of its size.

    Raises:
        DataError: Unknown or malformed spec, a budget beyond the pool, or a subset with no rows in the pool.
        WorkspaceError: A run id that does not exist.
    """
    kind, _, rest = spec.partition(":")
    uids = pool["uid"].to_numpy().astype(str)
    note = ""
    if kind == "full":
        chosen = uids
    elif kind == "random":
        b = _budget(rest, len(uids))
        chosen = np.sort(np.random.default_rng([seed, 7919]).choice(uids, size=b, replace=False))
        note = f"{b} rows drawn at random (seed {seed})"
    elif kind == "curated":
        if ws is None or dataset_id is None:
            raise DataError("the curated subset needs a workspace dataset (its decisions)")
        removed = (decisions_view or _decisions(ws, dataset_id)).removed
        chosen = uids[~np.isin(uids, np.fromiter(removed, dtype=object, count=len(removed)).astype(str))] \
            if removed else uids
        note = f"{len(uids) - len(chosen)} rows removed by decisions"
    elif kind == "selection":
        if ws is None:
            raise DataError("a selection subset needs a workspace")
        frame = ws.load_run_frame(_run_id(rest, spec))
        if "uid" not in frame.columns:
            raise DataError(f"run {rest} has no uid column; pass the id of a selection run")
        if "selected" in frame.columns:
            frame = frame[frame["selected"].astype(bool)]
        want = frame["uid"].astype(str).to_numpy()
        chosen = uids[np.isin(uids, want)]
        lost = int(np.isin(np.asarray(test_uids if test_uids is not None else [], dtype=str), want).sum())
        dropped = len(set(want)) - len(chosen)
        if lost and len(chosen):
            n_all = len(uids) + len(test_uids or [])
            share = len(chosen) / max(len(set(want)) - lost, 1)  # < 1 when the pool is capped
            top = min(int(round(lost * share)), len(uids) - len(chosen))
            extra = _top_up(ws, dataset_id, uids[~np.isin(uids, want)],
                            [u for u in (test_uids or []) if u in set(want)], top, seed)
            chosen = np.sort(np.concatenate([chosen, extra]))
            note = (f"{lost} of its rows fell in the held-out split and were replaced by {len(extra)} rows of the "
                    f"same clusters drawn at random from the training pool ({n_all} rows)")
        elif dropped:
            note = f"{dropped} rows of the selection are not in the training pool and were left out"
    elif kind == "top-value":
        budget, _, run = rest.partition(":")
        if ws is None:
            raise DataError("a top-value subset needs a workspace")
        frame = ws.load_run_frame(_run_id(run, spec))
        if not {"uid", "value"} <= set(frame.columns):
            raise DataError(f"run {run} has no uid/value columns; pass the id of a valuation run")
        values = dict(zip(frame["uid"].astype(str), frame["value"].astype(float)))
        v = np.array([values.get(u, np.nan) for u in uids])
        if np.isnan(v).any():
            raise DataError(f"valuation run {run} does not cover {int(np.isnan(v).sum())} rows of the data")
        b = _budget(budget, len(uids))
        order = np.lexsort((np.arange(len(v)), -v))
        chosen = np.sort(uids[order[:b]])
        note = f"the {b} highest values of run {run}"
    elif kind in ("kmq", "clean-kmq", "iterative"):
        chosen, note = _cluster_subset(kind, ws, dataset_id, rest, pool, seed)
    else:
        raise DataError(f"unknown subset {spec!r}")
    if len(chosen) == 0:
        raise DataError(f"subset {spec!r} has no rows left for training (the test rows are excluded)")
    return SubsetRows(spec, [str(u) for u in chosen], note)


def _top_up(ws: Workspace | None, dataset_id: int | None, candidates: np.ndarray, lost: Sequence[str], n: int,
            seed: int) -> np.ndarray:
    """Up to `n` rows drawn from `candidates` to stand in for the `lost` rows: per cluster of the newest clusters run
    as many as were lost there (fewer where the cluster has no rows left), so a cluster-shaped selection keeps its
    shape; uniformly when the dataset has no clusters."""
    rng = np.random.default_rng([seed, 7907])
    cluster_of = _cluster_of(ws, dataset_id) if ws is not None and dataset_id is not None else {}
    picked: list[str] = []
    left = np.asarray(candidates, dtype=str)
    if cluster_of:
        want = _counts([cluster_of.get(u, -1) for u in lost])
        cand_cl = np.array([cluster_of.get(u, -1) for u in left])
        for c, k in want.items():
            pool_c = left[cand_cl == c]
            k = min(int(round(k * n / max(len(lost), 1))), len(pool_c), n - len(picked))
            if k > 0:
                picked.extend(rng.choice(pool_c, size=k, replace=False).tolist())
        return np.asarray(picked, dtype=str)  # a cluster with no rows left stays short: its shape matters more
    return rng.choice(left, size=min(n, len(left)), replace=False).astype(str)


def _counts(xs: Sequence[int]) -> dict[int, int]:
    vals, counts = np.unique(np.asarray(xs, dtype=np.int64), return_counts=True)
    return {int(v): int(c) for v, c in zip(vals, counts)}


def _run_id(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"subset {spec!r}: {text!r} is not a run id (an integer)") from None


def _cluster_subset(kind: str, ws: Workspace | None, dataset_id: int | None, rest: str, pool: pd.DataFrame,
                    seed: int) -> tuple[np.ndarray, str]:
    """kmq / clean-kmq / iterative on the dataset's newest clusters, restricted to the pool (exactly B rows)."""
    if ws is None or dataset_id is None:
        raise DataError(f"a {kind} subset needs a workspace dataset with clusters")
    run = ws.latest_run("clusters", dataset_id=dataset_id)
    if run is None:
        raise DataError(f"dataset {dataset_id} has no clusters yet; run `python -m core cluster` first")
    clusters = load_clusters(ws, run.id)
    uids = pool["uid"].to_numpy().astype(str)
    outside = list(np.setdiff1d(clusters.uids.astype(str), uids))  # test rows and rows beyond the pool cap
    X = None
    if run.embedding_id is not None:
        rec = ws.embedding_by_id(run.embedding_id)
        X = np.asarray(ws.read_array(rec.relpath, mmap=True))  # memory-mapped: no copy of the (n, d) matrix
        if X.shape[0] != len(clusters.uids):
            X = None
    classes = sorted(set(pool["label"]))
    lab = dict(zip(pool["uid"], pool["label"]))
    # rows outside the pool get any label: they are removed and never drawn
    y = np.array([classes.index(lab[u]) if u in lab else 0 for u in clusters.uids.astype(str)])
    budget, _, values_run = rest.partition(":")
    b = _budget(budget, len(uids))
    where = f"{run.name} (k={clusters.k}), seed {seed}"
    if kind == "kmq":
        judge = None if X is None else judge_proba(ws, X, y, n_classes=len(classes), embedding_id=run.embedding_id,
                                                   seed=seed)
        sel = select_kmq(None, clusters, budget=b, removed=outside, seed=seed, y=y, classes=classes, judge=judge)
        return np.sort(sel.uids.astype(str)), f"kMQ on {where}"
    if kind == "iterative":
        if X is None:
            raise DataError(f"iterative subsets need the embeddings of {run.name} (run id {run.id}); cluster again")
        judge = judge_proba(ws, X, y, n_classes=len(classes), embedding_id=run.embedding_id, seed=seed)
        sel = select_iterative(X, y, clusters, budget=b, judge=judge, removed=outside, seed=seed, classes=classes)
        return np.sort(sel.uids.astype(str)), f"iterative refinement (logistic-regression judge) on {where}"
    vrun = ws.run(_run_id(values_run, f"clean-kmq:{rest}")) if values_run else ws.latest_run(
        "values", dataset_id=dataset_id)
    if vrun is None or vrun.status != "done":
        raise DataError(f"clean-kmq needs a finished valuation run of dataset {dataset_id}; run `python -m core "
                        "value` first or name one: clean-kmq:B:RUN_ID")
    values = load_values(ws, vrun.id)
    n_remove = removal_count("clean_kmq", values, vrun)  # None: the significantly harmful rows
    if n_remove is not None or not (np.asarray(values.counts) >= 2).any():
        if n_remove is None:
            raise DataError(f"{vrun.name} (run id {vrun.id}, {vrun.method}) has no standard errors and no suggested "
                            "removal: clean-kmq cannot tell harmful rows; use a sampling method (ts_dshapley)")
        n_remove = int(round(n_remove * len(uids) / max(len(values), 1)))
    keep = np.isin(values.uids.astype(str), clusters.uids.astype(str))
    values = replace(values, uids=values.uids[keep], values=values.values[keep], stderr=values.stderr[keep],
                     counts=values.counts[keep])
    sel = select_clean_kmq(values, clusters, budget=b, n_remove=n_remove, removed=outside, seed=seed, y=y,
                           classes=classes)
    return np.sort(sel.uids.astype(str)), (f"clean ({sel.params['n_dropped']} rows dropped: {sel.params['rule']}, "
                                           f"{vrun.name}), then kMQ on {where}")


def _load_eval(path: str) -> pd.DataFrame:
    from core.data import load_dataset

    return _frame(load_dataset(path).ds)


def _load_data(ws: Workspace, dataset_id: int) -> pd.DataFrame:
    from core.data import open_dataset

    return _frame(open_dataset(ws, f"ws:{dataset_id}").ds)


# --------------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class _DecisionView:
    removed: frozenset[str]
    relabels: dict[str, str]


def _decisions(ws: Workspace | None, dataset_id: int | None) -> _DecisionView:
    """The rows decided "remove" and the relabels (uid -> new label) of a dataset, from the one decision reader."""
    if ws is None or dataset_id is None:
        return _DecisionView(frozenset(), {})
    state = decisions.current(ws, dataset_id)
    return _DecisionView(frozenset(str(u) for u in state.removed),
                         {str(u): str(lab) for u, lab in state.relabels.items()})


def apply_relabels(df: pd.DataFrame, relabels: Mapping[str, str]) -> pd.DataFrame:
    """The frame with every relabelled row's label replaced by its new label (training and held-out rows alike)."""
    if not relabels:
        return df
    out = df.copy()
    new = out["uid"].map(relabels)
    out["label"] = new.where(new.notna(), out["label"]).astype(str)
    return out


# --------------------------------------------------------------------------------------------------- statistics

LEVEL = 0.95
MAJORITY_MARGIN = 0.02  # a model within 2 points of the majority-class rate learned (almost) nothing
MIN_CLUSTER_TEST_ROWS = 5  # a cluster counts as "in the evaluation split" from this many test rows


def t_interval(xs: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """(mean, half-width) of the two-sided Student-t interval of the mean; half-width nan with fewer than 2 values."""
    from scipy import stats

    a = np.asarray(list(xs), dtype=np.float64)
    if len(a) == 0:
        return float("nan"), float("nan")
    if len(a) < 2:
        return float(a.mean()), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    return float(a.mean()), half


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> dict[str, Any] | None:
    """Mean and t-interval of a[s] - b[s] over the seeds s both have (a paired design); None without shared seeds."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    mean, half = t_interval([a[s] - b[s] for s in seeds], level)
    return {"mean": mean, "half": half, "low": mean - half, "high": mean + half, "n": len(seeds)}


def _per_seed(checkpoints: Mapping[str, Any], spec: str, metric: str = "accuracy") -> dict[int, float]:
    return {int(v.get("seed", k.rsplit("|", 1)[1])): float(v[metric])
            for k, v in checkpoints.items() if k.rsplit("|", 1)[0] == spec}


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _json_num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def summarize_compare(checkpoints: Mapping[str, Any], subsets: Sequence[str]) -> list[dict[str, Any]]:
    """One row per subset: runs, rows, mean, sample std and 95 % t-interval of accuracy and macro-F1 over seeds, and
    the paired difference in accuracy against ``full`` and against the first ``random:`` subset (per seed, the same
    initialisation and held-out split) with its interval. Interval half-widths are None with one seed."""
    ref_random = next((s for s in subsets if s.startswith("random:")), None)
    per = {spec: _per_seed(checkpoints, spec) for spec in subsets}
    rows = []
    for spec in subsets:
        runs = [v for k, v in checkpoints.items() if k.rsplit("|", 1)[0] == spec]
        if not runs:
            continue
        acc_m, acc_s = _mean_std([r["accuracy"] for r in runs])
        f1_m, f1_s = _mean_std([r["macro_f1"] for r in runs])
        _, acc_h = t_interval([r["accuracy"] for r in runs])
        _, f1_h = t_interval([r["macro_f1"] for r in runs])
        n_rows = sorted({int(r["n_rows"]) for r in runs})
        row: dict[str, Any] = {
            "subset": spec, "runs": len(runs), "rows": n_rows[0] if len(n_rows) == 1 else n_rows,
            "n_train": int(np.mean([r["n_train"] for r in runs])),
            "steps": int(np.mean([r.get("steps", 0) for r in runs])),
            "accuracy_mean": acc_m, "accuracy_std": acc_s, "accuracy_ci": _json_num(acc_h),
            "macro_f1_mean": f1_m, "macro_f1_std": f1_s, "macro_f1_ci": _json_num(f1_h),
            "train_seconds": float(np.mean([r["train_seconds"] for r in runs])),
            "majority": _json_num(float(np.mean([r["majority"] for r in runs]))) if all(
                "majority" in r for r in runs) else None,
            "n_test": int(np.mean([r["n_test"] for r in runs])) if all(r.get("n_test") for r in runs) else None,
        }
        for name, ref in (("full", "full"), ("random", ref_random)):
            if ref is None or ref == spec or ref not in per:
                continue
            d = paired_difference(per[spec], per[ref])
            if d is not None:
                row[f"vs_{name}"] = {k: _json_num(v) if k != "n" else v for k, v in d.items()}
        rows.append(row)
    return rows


def _points(d: Mapping[str, Any]) -> str:
    half = d.get("half")
    return f"{100 * d['mean']:+.1f}" + ("" if half is None else f" ± {100 * half:.1f}") + " points"


def verdict_line(table: Sequence[Mapping[str, Any]]) -> str:
    """One plain sentence: does the best curated subset beat the full set (or random), with its paired interval?"""
    if not table:
        return "no fine-tune has finished yet"
    specs = [r["subset"] for r in table]
    ref = "full" if "full" in specs else next((s for s in specs if s.startswith("random:")), None)
    if ref is None:
        return "no full or random subset to compare against: add full (or random:B) for a verdict"
    key = "vs_full" if ref == "full" else "vs_random"
    cands = [r for r in table if r["subset"] != ref and key in r
             and not (ref == "full" and r["subset"].startswith("random:"))]
    if not cands:  # only full and random: how far a random subset of the budget is from the full set
        cands = [r for r in table if r["subset"] != ref and key in r]
    if not cands:
        return "only the reference subset has results so far"
    best = max(cands, key=lambda r: r[key]["mean"])
    d, name, other = best[key], best["subset"], "full" if ref == "full" else "random"
    n = d["n"]
    if n < 2 or d.get("half") is None:
        return (f"{name} vs {other}: {100 * d['mean']:+.1f} points with one seed; no difference can be detected "
                "from one seed: run 2 or more")
    if d["low"] > 0:
        return f"{name} beats {other} by {_points(d)[1:]} over {n} seeds (paired 95 % interval)"
    if d["high"] < 0:
        return f"{name} is worse than {other} by {_points(d)[1:]} over {n} seeds (paired 95 % interval)"
    return f"no difference between {name} and {other} detectable with {n} seeds ({_points(d)}, paired 95 % interval)"


def compare_warnings(table: Sequence[Mapping[str, Any]], checkpoints: Mapping[str, Any]) -> list[str]:
    """Plain warnings that make a comparison meaningless or weaker: one seed, models at the majority-class rate,
    a subset that misses a class or a cluster which the evaluation split contains."""
    out: list[str] = []
    if table and all(r["runs"] < 2 for r in table):
        out.append("one seed per subset: spreads and intervals are meaningless and differences may be noise; "
                   "use 2 or more seeds")
    def margin(r: Mapping[str, Any]) -> float:
        """Points above the majority rate a model needs to differ from it: 2 standard errors of an accuracy at that
        rate on this many test rows, at least MAJORITY_MARGIN."""
        m, n = r["majority"], r.get("n_test")
        return max(MAJORITY_MARGIN, 2 * float(np.sqrt(m * (1 - m) / n)) if n else 0.0)

    near = [r for r in table if r.get("majority") is not None and r["accuracy_mean"] <= r["majority"] + margin(r)]
    if table and len(near) == len(table):
        out.append(f"every model is within {100 * margin(table[0]):.0f} points of the majority-class rate "
                   f"({100 * table[0]['majority']:.1f} %): they learned little, so the comparison says nothing; "
                   "train more steps or epochs, or check the labels")
    else:
        out.extend(f"{r['subset']} is within {100 * margin(r):.0f} points of the majority-class rate "
                   f"({100 * r['majority']:.1f} %): it learned little" for r in near)
    seen: set[str] = set()
    for key in sorted(checkpoints):
        m = checkpoints[key]
        spec = key.rsplit("|", 1)[0]
        for c in m.get("missing_classes") or []:
            msg = (f"{spec} has no rows of class {c!r}, which the evaluation split contains: its model cannot "
                   "predict that class")
            if msg not in seen:
                seen.add(msg)
                out.append(msg)
        missing = m.get("missing_clusters") or {}
        if missing:
            top = sorted(missing.items(), key=lambda kv: -kv[1])[:5]
            msg = (f"{spec} has no rows of {len(missing)} cluster(s) that the evaluation split contains ("
                   + ", ".join(f"cluster {c}: {n} test rows" for c, n in top)
                   + "): its score there is a guess")
            if spec not in seen:
                seen.add(spec)
                out.append(msg)
    return out


# --------------------------------------------------------------------------------------------------- estimate

CALIBRATION_STEPS = 12
CALIBRATION_ROWS = 1_600  # one mega-batch of `finetune.length_grouped_batches` at batch 32: a real run's batches
LENGTH_SAMPLE = 2_000  # rows whose token lengths stand for a dataset's in the estimate


@dataclass(frozen=True)
class Throughput:
    """Measured speed of fine-tuning on this machine, for one model, max length, batch size and device.

    A training step's time is proportional to the token positions it processes (padding included), so the
    training speed is kept per token as well: the estimate multiplies it by the padded tokens per example that
    each subset's own batching gives (`finetune.padded_tokens_per_example` over the dataset's token lengths).
    `train_examples_per_second` stays for the line shown and for measurements made before tokens were counted.
    """

    train_examples_per_second: float
    predict_examples_per_second: float
    load_seconds: float  # model load and set-up per fine-tune
    device: str
    key: str
    measured_at: float = 0.0
    basis_examples: int = 0  # training examples behind the rates: the calibration's, then every real fine-tune's
    train_tokens_per_second: float = 0.0  # 0: not measured (an older measurement); the estimate uses examples/s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def throughput_key(*, model: str | None, max_length: int, batch_size: int | None, threads: int | None,
                   device: str | None) -> str:
    import platform

    return "|".join(str(x) for x in (platform.node(), model or "default", max_length, batch_size or "auto",
                                     threads or "auto", device or "auto"))


def cached_throughput(ws: Workspace, **key: Any) -> Throughput | None:
    """The last measured throughput for these options on this machine, or None."""
    got = ws.get_setting(f"throughput.{throughput_key(**key)}")
    if not isinstance(got, dict):
        return None
    known = set(Throughput.__dataclass_fields__)
    return Throughput(**{k: v for k, v in got.items() if k in known})


def measure_throughput(ws: Workspace | None, texts: Sequence[str], labels: Sequence[str], *, model: str | None = None,
                       max_length: int = 128, batch_size: int | None = 32, threads: int | None = None,
                       device: str | None = None, steps: int = CALIBRATION_STEPS, refresh: bool = False) -> Throughput:
    """Time a short fine-tune (`steps` optimizer steps on up to `CALIBRATION_ROWS` rows of the data, batched as a
    real run batches them, then a prediction pass over 8 batches' rows; after an untimed 2-step warm-up) and cache
    it in the workspace (setting ``throughput.<machine|model|max length|batch|threads|device>``).

    Args:
        texts, labels: Rows of the data to calibrate on (their lengths matter); at least two classes.
    """
    opts = dict(model=model, max_length=max_length, batch_size=batch_size, threads=threads, device=device)
    if ws is not None and not refresh:
        got = cached_throughput(ws, **opts)
        if got is not None:
            return got
    classes = sorted({str(v) for v in labels})
    if len(classes) < 2 or len(texts) < 16:
        raise DataError("calibration needs at least 16 rows of 2 or more classes")
    bs = 32 if batch_size is None else int(batch_size)
    rng = np.random.default_rng(0)
    n_train = min(len(texts), max(steps * bs, CALIBRATION_ROWS))
    idx = rng.choice(len(texts), size=n_train, replace=False)
    n_pred = min(len(texts), 8 * bs)
    pidx = rng.choice(len(texts), size=n_pred, replace=False)
    train_t, train_y = [texts[i] for i in idx], [str(labels[i]) for i in idx]
    # a first, untimed run of 2 steps pays what a comparison pays once and not per fine-tune: the imports, the
    # first model load from disk, the first calls' kernel set-up
    finetune.train_and_evaluate(train_t[:2 * bs], train_y[:2 * bs], train_t[:bs], train_y[:bs], classes=classes,
                                model=model, epochs=1, batch_size=batch_size, max_length=max_length,
                                valid_fraction=0.0, threads=threads, device=device, max_steps=2,
                                require_test_classes=False)
    t0 = time.perf_counter()
    res = finetune.train_and_evaluate(train_t, train_y,
                                      [texts[i] for i in pidx], [str(labels[i]) for i in pidx], classes=classes,
                                      model=model, epochs=1, batch_size=batch_size, max_length=max_length,
                                      valid_fraction=0.0, threads=threads, device=device,
                                      max_steps=max(1, steps), require_test_classes=False)
    wall = time.perf_counter() - t0
    seen, train_s = _steps_seen(res, min(res.steps * bs, n_train * max(1, res.epochs_run)))
    out = Throughput(train_examples_per_second=float(res.examples_per_second),
                     predict_examples_per_second=float(res.n_test / max(res.eval_seconds, 1e-9)),
                     load_seconds=float(max(0.0, wall - train_s - res.eval_seconds)), device=res.device,
                     key=throughput_key(**opts), measured_at=time.time(), basis_examples=int(seen),
                     train_tokens_per_second=float(res.train_tokens / max(train_s, 1e-9)))
    if ws is not None:
        ws.set_setting(f"throughput.{out.key}", out.to_dict())
    return out


REFINE_MEMORY_EXAMPLES = 20_000  # how many earlier training examples a refined rate still remembers


def refine_throughput(ws: Workspace, *, train_examples: int, step_seconds: float, predict_examples: int,
                      predict_seconds: float, overhead_seconds: float, device_label: str, train_tokens: int = 0,
                      **key: Any) -> Throughput:
    """Fold one finished fine-tune's own speed into the cached measurement, so the next estimate learns from
    the real runs (full-length passes over real rows) and not only from the short calibration.

    Rates combine as amounts over seconds, the earlier basis weighted by its examples (at most
    `REFINE_MEMORY_EXAMPLES`, so the machine's recent speed wins over an old calibration); the per-fine-tune
    overhead (model load, tokenising) is the newest run's. Returns the updated measurement.
    """
    k = throughput_key(**key)
    old = cached_throughput(ws, **key)
    w_old = 0 if old is None else min(int(old.basis_examples or 256), REFINE_MEMORY_EXAMPLES)
    t_old = 0.0 if old is None or w_old == 0 else w_old / old.train_examples_per_second
    p_old = 0.0 if old is None or w_old == 0 else w_old / old.predict_examples_per_second
    train_rate = (w_old + train_examples) / max(t_old + step_seconds, 1e-9)
    # prediction: the same weights (the old rate for as many examples as its training basis)
    predict_rate = ((w_old + predict_examples) / max(p_old + predict_seconds, 1e-9)
                    if predict_examples else (old.predict_examples_per_second if old else 0.0))
    tok_rate = 0.0
    if train_tokens > 0:
        # the old per-token rate stands for the seconds its examples took (t_old)
        tok_old = old.train_tokens_per_second * t_old if old is not None and old.train_tokens_per_second > 0 else 0.0
        tok_rate = (tok_old + train_tokens) / max((t_old if tok_old else 0.0) + step_seconds, 1e-9)
    out = Throughput(train_examples_per_second=float(train_rate), predict_examples_per_second=float(predict_rate),
                     load_seconds=float(max(0.0, overhead_seconds)), device=device_label, key=k,
                     measured_at=time.time(), basis_examples=int(w_old + train_examples),
                     train_tokens_per_second=float(tok_rate or (old.train_tokens_per_second if old else 0.0)))
    ws.set_setting(f"throughput.{k}", out.to_dict())
    return out


def length_sample(ws: Workspace, dataset_id: int, *, data: Any = None, model: str | None = None,
                  max_length: int = 128) -> np.ndarray:
    """Token lengths of up to `LENGTH_SAMPLE` rows of the dataset (a seeded draw), cached in the workspace per
    dataset, model and max length: what the estimate's padded-token counts are simulated from."""
    key = f"finetune.lengths.{dataset_id}|{model or 'default'}|{max_length}"
    got = ws.get_setting(key)
    if isinstance(got, list) and got:
        return np.asarray(got, dtype=np.int64)
    df = _frame(data) if data is not None else _load_data(ws, dataset_id)
    sample = df.sample(n=min(len(df), LENGTH_SAMPLE), random_state=0) if len(df) else df
    lens = finetune.token_lengths(sample["text"].tolist(), model=model, max_length=max_length)
    ws.set_setting(key, [int(v) for v in lens])
    return lens


@dataclass(frozen=True)
class RunShape:
    """What one (subset, seed) fine-tune will do under a protocol."""

    n_rows: int
    n_train: int
    n_valid: int
    steps: int
    checks: int  # validation passes (at most)
    train_examples: int


def protocol_options(protocol: str, valid_fraction: float | None, early_stopping_patience: int) -> tuple[float, int]:
    """(valid_fraction, patience) a protocol uses: no validation split for equal steps or epochs unless one is
    asked for; early stopping on a 10 % split for convergence."""
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    if protocol == "convergence":
        vf = 0.1 if valid_fraction is None else float(valid_fraction)
        if vf <= 0 or early_stopping_patience < 1:
            raise DataError("the convergence protocol needs a validation split (--valid-fraction > 0) and "
                            "--patience 1 or more")
        return vf, int(early_stopping_patience)
    return (0.0 if valid_fraction is None else float(valid_fraction)), int(early_stopping_patience)


def plan_runs(sizes: Mapping[str, int], *, protocol: str, epochs: int, batch_size: int,
              valid_fraction: float) -> dict[str, RunShape]:
    """Per subset (rows) the training rows, validation rows, optimizer steps and examples of one fine-tune.

    equal-steps: every subset trains `epochs` passes' worth of steps of the largest subset; equal-epochs: `epochs`
    passes over its own rows; convergence: at most `epochs` passes, fewer after early stopping (an upper bound).
    """
    def split(n: int) -> tuple[int, int]:
        v = int(round(valid_fraction * n)) if valid_fraction > 0 and n >= 20 else 0
        return n - v, v

    shapes = {s: split(int(n)) for s, n in sizes.items()}
    largest = max((t for t, _ in shapes.values()), default=0)
    out: dict[str, RunShape] = {}
    for s, (n_train, n_valid) in shapes.items():
        per_epoch = max(1, math.ceil(n_train / batch_size))
        if protocol == "equal-steps":
            steps = epochs * max(1, math.ceil(largest / batch_size))
            examples = min(steps * batch_size, (steps // per_epoch) * n_train
                           + (steps % per_epoch) * batch_size)
            checks = math.ceil(steps / max(1, math.ceil(largest / batch_size))) if n_valid else 0
        else:
            steps = epochs * per_epoch
            examples = epochs * n_train
            checks = epochs if n_valid else 0
        out[s] = RunShape(int(sizes[s]), n_train, n_valid, int(steps), int(checks), int(examples))
    return out


def estimate_seconds(sizes: Mapping[str, int], *, seeds: int, n_test: int, throughput: Throughput, protocol: str,
                     epochs: int, batch_size: int, valid_fraction: float, setup_seconds: float = 0.0,
                     lengths: Sequence[int] | np.ndarray | None = None) -> dict[str, Any]:
    """The estimated duration of a comparison: `setup_seconds` (reading the data, drawing the subsets) plus, per
    fine-tune, model set-up + training time + (validation rows x passes + test rows) / prediction speed, summed
    over subsets x seeds.

    Training time is training examples x padded tokens per example (simulated from `lengths`, the dataset's
    token lengths, for the subset's own row count) / tokens per second, when both are known; else training
    examples / examples per second.

    Returns:
        {"total": seconds, "per_subset": {spec: seconds of one fine-tune}, "train_examples": total,
        "train_seconds": their training time, "upper_bound": True for the convergence protocol (early stopping may
        finish sooner), "by_tokens": whether the token rate was used}.
    """
    shapes = plan_runs(sizes, protocol=protocol, epochs=epochs, batch_size=batch_size, valid_fraction=valid_fraction)
    per, train_s = {}, {}
    by_tokens = lengths is not None and len(lengths) > 0 and throughput.train_tokens_per_second > 0
    for s, sh in shapes.items():
        if by_tokens:
            tpe = finetune.padded_tokens_per_example(lengths, sh.n_train, batch_size)  # type: ignore[arg-type]
            train = sh.train_examples * tpe / throughput.train_tokens_per_second
        else:
            train = sh.train_examples / throughput.train_examples_per_second
        train_s[s] = train
        per[s] = (throughput.load_seconds + train
                  + (sh.n_valid * sh.checks + n_test) / throughput.predict_examples_per_second)
    return {"total": float(setup_seconds + seeds * sum(per.values())), "per_subset": per,
            "train_examples": int(seeds * sum(sh.train_examples for sh in shapes.values())),
            "train_seconds": float(seeds * sum(train_s.values())),
            "upper_bound": protocol == "convergence", "by_tokens": by_tokens}


# reading the data and drawing the subsets, until a comparison on the dataset has measured it (the demo's
# 38,158 rows took 1.2 s on 2 cores: 3.2e-5 s a row; a saved selection or kMQ subset reads a little more)
SETUP_SECONDS_PER_ROW = 5e-5


def setup_estimate(ws: Workspace, dataset_id: int, n_rows: int) -> float:
    """Seconds to read the data and draw every subset: the last comparison's rate on this dataset, else a default."""
    rate = ws.get_setting(f"compare.setup_seconds.{dataset_id}")
    return float(rate if isinstance(rate, (int, float)) else SETUP_SECONDS_PER_ROW) * n_rows


def _pool_size(n_rows: int, *, has_eval_file: bool, eval_fraction: float, eval_max: int,
               pool_max: int | None) -> tuple[int, int]:
    """(training pool rows, held-out test rows) before any subset is drawn."""
    n_test = 0 if has_eval_file else min(int(round(eval_fraction * n_rows)), eval_max)
    pool = n_rows - n_test
    return (min(pool, pool_max) if pool_max else pool), n_test


def subset_sizes(ws: Workspace, dataset_id: int, specs: Sequence[str], *, n_rows: int, pool: int) -> dict[str, int]:
    """The rows each spec will train on, from counts only (nothing is drawn): what the estimate needs."""
    removed = len(_decisions(ws, dataset_id).removed)
    out = {}
    for spec in specs:
        kind, _, rest = spec.partition(":")
        if kind == "full":
            out[spec] = pool
        elif kind == "curated":
            out[spec] = max(1, pool - int(round(removed * pool / max(n_rows, 1))))
        elif kind == "selection":
            run = ws.run(_run_id(rest, spec))
            n = int((run.result or {}).get("n") or len(ws.load_run_frame(run.id)))
            out[spec] = min(pool, n if pool >= n_rows - min(n_rows, DEFAULT_EVAL_MAX)
                            else int(round(n * pool / max(n_rows, 1))))
        else:
            out[spec] = min(pool, _budget(rest.split(":", 1)[0], pool))
    return out


def format_duration(seconds: float) -> str:
    """12 s, 4.5 min, 2.3 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def calibrate(ws: Workspace, dataset_id: int, *, data: Any = None, model: str | None = None, max_length: int = 128,
              batch_size: int | None = 32, threads: int | None = None, device: str | None = None,
              refresh: bool = False) -> Throughput:
    """Measure (once, then cached) the fine-tuning speed on rows of this dataset: `measure_throughput`."""
    opts = dict(model=model, max_length=max_length, batch_size=batch_size, threads=threads, device=device)
    if not refresh:
        got = cached_throughput(ws, **opts)
        if got is not None:
            return got
    df = _frame(data) if data is not None else _load_data(ws, dataset_id)
    length_sample(ws, dataset_id, data=df, model=model, max_length=max_length)
    sample = df.sample(n=min(len(df), CALIBRATION_ROWS), random_state=0)
    return measure_throughput(ws, sample["text"].tolist(), sample["label"].tolist(), refresh=True, **opts)


def estimate_compare(ws: Workspace, dataset_id: int, subsets: Sequence[str] | str, *, n_rows: int | None = None,
                     data: Any = None, seeds: int = DEMO_SEEDS, epochs: int = DEMO_EPOCHS,
                     protocol: str = DEFAULT_PROTOCOL, pool_max: int | None = DEMO_POOL_MAX,
                     eval_path: str | None = None, eval_fraction: float = DEFAULT_EVAL_FRACTION,
                     eval_max: int = DEFAULT_EVAL_MAX, model: str | None = None, batch_size: int | None = 32,
                     max_length: int = 128, valid_fraction: float | None = None, early_stopping_patience: int = 1,
                     threads: int | None = None, device: str | None = None, measure: bool = True,
                     **_ignored: Any) -> dict[str, Any]:
    """How long a comparison would take, before it starts: subset sizes from counts, the protocol's steps, and this
    machine's measured speed (`calibrate`; with measure=False only a cached measurement is used).

    Returns:
        {"total": seconds or None (no measurement yet), "line": one sentence, "sizes", "shapes", "per_subset",
        "pool", "n_test", "throughput" (dict or None)}.
    """
    from core.device import batch_size_for, select_device

    specs = parse_subsets(subsets)
    vf, _ = protocol_options(protocol, valid_fraction, early_stopping_patience)
    if n_rows is None:
        n_rows = int(ws.dataset(dataset_id).n_rows)
    n_eval_file = None
    if eval_path is not None:
        n_eval_file = len(_load_eval(str(eval_path)))
    pool, n_test = _pool_size(n_rows, has_eval_file=eval_path is not None, eval_fraction=eval_fraction,
                              eval_max=eval_max, pool_max=pool_max)
    n_test = n_eval_file if n_eval_file is not None else n_test
    sizes = subset_sizes(ws, dataset_id, specs, n_rows=n_rows, pool=pool)
    bs = batch_size_for(select_device(device, threads=threads), batch_size, max_length=max_length)
    shapes = plan_runs(sizes, protocol=protocol, epochs=epochs, batch_size=bs, valid_fraction=vf)
    opts = dict(model=model, max_length=max_length, batch_size=batch_size, threads=threads, device=device)
    tp = calibrate(ws, dataset_id, data=data, **opts) if measure else cached_throughput(ws, **opts)
    out: dict[str, Any] = {"sizes": sizes, "shapes": {s: asdict(v) for s, v in shapes.items()}, "pool": pool,
                           "n_test": n_test, "throughput": None if tp is None else tp.to_dict(), "total": None,
                           "per_subset": {}}
    runs = len(specs) * seeds
    if tp is None:
        out["line"] = (f"{len(specs)} subset(s) × {seeds} seed(s) = {runs} fine-tunes on a {pool:,}-row pool; "
                       "measure this machine's speed for an estimate")
        return out
    lens = (length_sample(ws, dataset_id, data=data, model=model, max_length=max_length)
            if tp.train_tokens_per_second > 0 else None)
    est = estimate_seconds(sizes, seeds=seeds, n_test=n_test, throughput=tp, protocol=protocol, epochs=epochs,
                           batch_size=bs, valid_fraction=vf, setup_seconds=setup_estimate(ws, dataset_id, n_rows),
                           lengths=lens)
    out.update(total=est["total"], per_subset=est["per_subset"])
    bound = "at most " if est["upper_bound"] else "about "
    out["line"] = (f"estimated {bound}{format_duration(est['total'])}: {runs} fine-tunes ({len(specs)} subsets × "
                   f"{seeds} seeds), {est['train_examples']:,} training examples at "
                   f"{est['train_examples'] / max(est['train_seconds'], 1e-9):.0f} examples/s on {tp.device} "
                   f"(measured), {n_test:,} test rows")
    return out


def table_rows(table: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The result table as text cells for the CLI and the benchmark: mean ± 95 % interval, paired differences in
    points with their intervals, "n/a" (never None) where a value does not exist."""
    def cell(mean: float, half: float | None, scale: float = 1.0, fmt: str = ".4f") -> str:
        return f"{scale * mean:{fmt}}" + ("" if half is None else f" ± {scale * half:{fmt}}")

    out = []
    for r in table:
        row = {"subset": r["subset"], "rows": str(r["rows"]), "steps": str(r.get("steps", "")),
               "seeds": str(r["runs"]), "accuracy (95% CI)": cell(r["accuracy_mean"], r.get("accuracy_ci")),
               "macro-F1 (95% CI)": cell(r["macro_f1_mean"], r.get("macro_f1_ci"))}
        for name in ("full", "random"):
            d = r.get(f"vs_{name}")
            row[f"vs {name} (points)"] = "n/a" if d is None else _points(d).replace(" points", "")
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------------- compare


def _cap_pool(pool: pd.DataFrame, pool_max: int | None, seed: int) -> pd.DataFrame:
    """A stratified sample of `pool_max` rows of the pool (seeded), or the pool itself."""
    if not pool_max or len(pool) <= pool_max:
        return pool
    keep = sampling.stratified_sample(pool["label"].to_numpy(), pool_max, np.random.default_rng([seed, 104729]))
    return pool.iloc[keep].reset_index(drop=True)


def _cluster_of(ws: Workspace, dataset_id: int) -> dict[str, int]:
    run = ws.latest_run("clusters", dataset_id=dataset_id)
    if run is None:
        return {}
    frame = ws.load_run_frame(run.id)
    return dict(zip(frame["uid"].astype(str), frame["cluster"].astype(int)))


def compare(
    ws: Workspace,
    dataset_id: int,
    *,
    subsets: Sequence[str] | str,
    eval_path: str | None = None,
    eval_data: Any = None,
    data: Any = None,
    seeds: int | Sequence[int] = 3,
    epochs: int = 3,
    protocol: str = DEFAULT_PROTOCOL,
    pool_max: int | None = None,
    model: str | None = None,
    batch_size: int | None = 32,
    lr: float = 5e-5,
    max_length: int = 128,
    valid_fraction: float | None = None,
    early_stopping_patience: int = 1,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    eval_max: int = DEFAULT_EVAL_MAX,
    threads: int | None = None,
    device: str | None = None,
    resume: bool = True,
    job_id: str | None = None,
    on_progress: FinetuneProgress | None = None,
) -> int:
    """Fine-tune every (subset x seed) under a fair protocol and record means, intervals and paired differences.

    Fairness: per seed s, one held-out split (seed s) and one training pool (the rest, capped at `pool_max` rows by
    a stratified draw) serve every subset, so a budget of B gives B rows to every subset; the model's initialisation
    and batch order are seeded by s for every subset too (paired seeds). Relabel decisions replace the labels of
    their rows everywhere (training subsets and held-out rows). The protocol fixes the training length:
    ``equal-steps`` (every subset takes as many optimizer steps as `epochs` passes over the largest subset),
    ``equal-epochs`` (`epochs` passes over each subset's own rows) or ``convergence`` (at most `epochs` passes,
    early stopping on a validation split carved the same way from each subset).

    Each finished fine-tune is saved as checkpoint ``"<subset>|<seed>"`` (its metrics) and as a child "finetune"
    run; a new call with the same parameters resumes the newest unfinished run with them and trains only what is
    missing.

    Args:
        ws: The workspace.
        dataset_id: The registered dataset the subsets come from.
        subsets: Subset specs (see `resolve_subset`), a list or one comma-separated string.
        eval_path: A labelled test file (anything `core.data.load_dataset` reads): the same for every seed.
        eval_data: The test set as a Dataset/DataFrame (uid, text, label); overrides `eval_path`.
        data: The dataset's rows (Dataset/DataFrame with uid, text, label) when already loaded; else reopened.
        seeds: A count n (seeds 0..n-1) or the seeds themselves.
        epochs: Passes (see the protocol).
        protocol: "equal-steps" (default), "equal-epochs" or "convergence".
        pool_max: Cap on the training pool (rows), drawn per seed with stratification; None = no cap.
        valid_fraction: Validation share carved from each subset; None = 0 for equal steps/epochs, 0.1 for
            convergence.
        model, batch_size, lr, max_length, early_stopping_patience, threads, device: Passed to
            `finetune.train_and_evaluate`.
        resume: Continue an unfinished run with the same parameters (default); False always starts afresh.
        job_id: The background job running this (its run id and progress are recorded).
        on_progress: (fraction, message) over the whole experiment; messages carry an ETA.

    Returns:
        The compare run id; its result holds ``table`` (see `summarize_compare`), ``verdict``, ``warnings`` and
        ``estimate_seconds``; its run frame one row per (subset, seed).

    Raises:
        DataError: Bad subset specs or protocol, an empty subset, an empty test set.
        ModelError: The model cannot be loaded.
    """
    import pandas as pd

    from core.device import batch_size_for, select_device

    t_setup = time.perf_counter()
    specs = parse_subsets(subsets)
    seed_list = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise DataError("no seeds given; use --seeds 2 or more for an interval")
    vf, patience = protocol_options(protocol, valid_fraction, early_stopping_patience)
    if pool_max is not None and pool_max < 2:
        raise DataError(f"the training pool cap must be at least 2 rows (got {pool_max})")
    dec = _decisions(ws, dataset_id)
    df = apply_relabels(_frame(data) if data is not None else _load_data(ws, dataset_id), dec.relabels)
    fixed_test = None
    if eval_data is not None or eval_path is not None:
        fixed_test = _frame(eval_data) if eval_data is not None else _load_eval(str(eval_path))
        eval_desc: Any = {"file": str(eval_path)} if eval_data is None else {"given": len(fixed_test)}
    else:
        eval_desc = {"held_out": eval_fraction, "max": eval_max, "seed": "per seed"}

    def split(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        if fixed_test is not None:
            return _cap_pool(df, pool_max, seed), fixed_test
        pool_idx, test_idx = held_out_split(df["label"].tolist(), fraction=eval_fraction, max_rows=eval_max,
                                            seed=seed)
        if len(test_idx) == 0:
            raise DataError(f"the data has too few rows ({len(df)}) to hold out a test set; pass --eval FILE")
        return (_cap_pool(df.iloc[pool_idx].reset_index(drop=True), pool_max, seed),
                df.iloc[test_idx].reset_index(drop=True))

    classes = sorted(set(df["label"]) | (set(fixed_test["label"]) if fixed_test is not None else set()))
    dev = select_device(device, threads=threads)
    bs = batch_size_for(dev, batch_size, max_length=max_length)
    params = {"subsets": specs, "seeds": seed_list, "epochs": epochs, "protocol": protocol, "pool_max": pool_max,
              "model": model, "batch_size": batch_size, "lr": lr, "max_length": max_length, "valid_fraction": vf,
              "early_stopping_patience": patience, "eval": eval_desc, "relabels": len(dec.relabels),
              "removed": len(dec.removed)}
    existing = ws.find_resumable("compare", dataset_id=dataset_id, method="compare", params=params) \
        if resume else None
    prev = float(existing.seconds or 0.0) if existing is not None else 0.0
    report = on_progress or (lambda f, m: None)
    cluster_of = _cluster_of(ws, dataset_id)
    n_total = len(specs) * len(seed_list)
    with runs.recorded(ws, "compare", dataset_id=dataset_id, method="compare", params=params, job_id=job_id,
                       resume=None if existing is None else existing.id,
                       seconds_before=prev + time.perf_counter() - t_setup) as run:
        run_id = run.id
        done = ws.checkpoints(run_id)
        ws.update_run(run_id, result={"n_done": len(done)})
        # resolve every subset of every seed first: sizes fix the step budget, the estimate and the ETA
        report(0.0, f"drawing {n_total} subsets from the training pool")
        plans: dict[int, tuple[pd.DataFrame, pd.DataFrame, dict[str, SubsetRows], dict[str, RunShape]]] = {}
        for seed in seed_list:
            pool, test = split(seed)
            rows = {spec: resolve_subset(ws, dataset_id, spec, pool, seed=seed, test_uids=test["uid"].tolist(),
                                         decisions_view=dec) for spec in specs}
            shapes = plan_runs({s: len(r.uids) for s, r in rows.items()}, protocol=protocol, epochs=epochs,
                               batch_size=bs, valid_fraction=vf)
            plans[seed] = (pool, test, rows, shapes)
        n_test = len(next(iter(plans.values()))[1])
        tp = cached_throughput(ws, model=model, max_length=max_length, batch_size=batch_size, threads=threads,
                               device=device)
        sizes0 = {s: len(r.uids) for s, r in plans[seed_list[0]][2].items()}
        setup_guess = setup_estimate(ws, dataset_id, len(df))  # what the page showed before Start
        ws.set_setting(f"compare.setup_seconds.{dataset_id}",
                       round((time.perf_counter() - t_setup) / max(len(df), 1), 7))
        estimate = None if tp is None else estimate_seconds(
            sizes0, seeds=len(seed_list), n_test=n_test, throughput=tp, protocol=protocol, epochs=epochs,
            batch_size=bs, valid_fraction=vf, setup_seconds=setup_guess,
            lengths=(length_sample(ws, dataset_id, data=df, model=model, max_length=max_length)
                     if tp.train_tokens_per_second > 0 else None))["total"]
        # work weights for the progress fraction and ETA: training examples plus the prediction passes
        todo = [(s, seed) for seed in seed_list for s in specs]
        weight = {(s, seed): plans[seed][3][s].train_examples + (plans[seed][3][s].n_valid
                                                                 * plans[seed][3][s].checks + n_test) / 3.0
                  for s, seed in todo}
        total_w = sum(weight.values()) or 1.0
        done_w = sum(weight[(s, seed)] for s, seed in todo if f"{s}|{seed}" in done)
        start_w = done_w

        def eta(frac_w: float) -> str:
            """The estimate before any work is done; afterwards the progress line's own time-left takes over
            (the fraction reported is weighted by each fine-tune's work, so it is a fair basis)."""
            if frac_w > start_w or estimate is None:
                return ""
            return f" · estimated {format_duration(estimate)}"

        for i, (spec, seed) in enumerate(todo):
            key = f"{spec}|{seed}"
            if key in done:
                continue
            pool, test, rows, shapes = plans[seed]
            sub, shape = rows[spec], shapes[spec]
            lab = dict(zip(pool["uid"], zip(pool["text"], pool["label"])))
            texts = [lab[u][0] for u in sub.uids]
            labels = [lab[u][1] for u in sub.uids]
            base_w = done_w

            def step(frac: float, msg: str, _i: int = i, _key: str = key, _w: float = weight[(spec, seed)],
                     _base: float = base_w) -> None:
                f = (_base + frac * _w) / total_w
                report(f, f"[{_i + 1}/{n_total}] {_key}: {msg}")

            report(done_w / total_w, f"[{i + 1}/{n_total}] {key}: {len(texts)} rows, {shape.steps} steps"
                   + eta(done_w))
            t_run = time.perf_counter()
            res = finetune.train_and_evaluate(
                texts, labels, test["text"].tolist(), test["label"].tolist(), classes=classes, model=model,
                epochs=epochs, batch_size=bs, lr=lr, max_length=max_length, seed=seed, valid_fraction=vf,
                early_stopping_patience=patience, threads=threads, device=device,
                max_steps=shape.steps if protocol == "equal-steps" else None,
                eval_every=(max(1, math.ceil(max(s.n_train for s in shapes.values()) / bs))
                            if protocol == "equal-steps" else None),
                require_test_classes=False, on_progress=step)
            wall_run = time.perf_counter() - t_run
            _refine_from(ws, res, wall_run, shape, model=model, max_length=max_length, batch_size=batch_size,
                         threads=threads, device=device)
            test_classes = set(test["label"])
            missing_classes = sorted(test_classes - set(labels))
            missing_clusters: dict[str, int] = {}
            if cluster_of:
                t_counts = pd.Series([cluster_of.get(u, -1) for u in test["uid"]]).value_counts()
                have = {cluster_of.get(u, -1) for u in sub.uids}
                missing_clusters = {str(c): int(n) for c, n in t_counts.items()
                                    if c >= 0 and n >= MIN_CLUSTER_TEST_ROWS and c not in have}
            majority = float(test["label"].value_counts(normalize=True).iloc[0])
            metrics = dict(res.summary(), subset=spec, seed=seed, n_rows=len(sub.uids), note=sub.note,
                           majority=majority, missing_classes=missing_classes, missing_clusters=missing_clusters,
                           protocol=protocol)
            ws.save_checkpoint(run_id, key, metrics)
            done[key] = metrics
            done_w += weight[(spec, seed)]
            with runs.recorded(ws, "finetune", dataset_id=dataset_id, method=spec,
                               params=dict(res.params, subset=spec, protocol=protocol), parent_id=run_id,
                               job_id=job_id, attach=False) as child:
                child.done(res.to_dict(), seconds=res.train_seconds)
            table = summarize_compare(done, specs)
            ws.update_run(run_id, result={"table": table, "n_done": len(done), "n_test": n_test,
                                          "estimate_seconds": estimate, "verdict": verdict_line(table),
                                          "warnings": compare_warnings(table, done), "device": res.device},
                          seconds=run.elapsed)
            report(done_w / total_w, f"[{i + 1}/{n_total}] {key} finished: accuracy {res.accuracy:.4f}")
        table = summarize_compare(done, specs)
        frame = pd.DataFrame([{k: v for k, v in m.items() if not isinstance(v, (dict, list))}
                              for m in done.values()])
        ws.save_run_frame(run_id, frame)
        devices = sorted({str(m.get("device", "cpu")) for m in done.values()})
        run.done({"table": table, "n_done": len(done), "n_test": n_test, "classes": classes,
                  "verdict": verdict_line(table), "warnings": compare_warnings(table, done),
                  "estimate_seconds": estimate, "device": ", ".join(devices), "error": ""})
    report(1.0, "done")
    return run_id


def _steps_seen(res: finetune.FinetuneResult, derived: int) -> tuple[int, float]:
    """(examples the training steps processed, their seconds): as the fine-tune recorded them, else (a result from
    before they were recorded) `derived` from steps x batch size and the examples-per-second rate."""
    if res.train_examples > 0 and res.step_seconds > 0:
        return int(res.train_examples), float(res.step_seconds)
    return int(derived), derived / max(res.examples_per_second, 1e-9)


def _refine_from(ws: Workspace, res: finetune.FinetuneResult, wall: float, shape: RunShape, **key: Any) -> None:
    """`refine_throughput` from one finished fine-tune of a comparison: its steps' examples and seconds, its
    prediction passes (test, and validation as often as it was scored) and what is left of its wall time."""
    if res.examples_per_second <= 0:
        return
    seen, step_s = _steps_seen(res, min(shape.train_examples, res.steps * int(res.params.get("batch_size") or 32)))
    pred_n = res.n_test + res.n_valid * max(0, len(res.valid_curve))
    # the validation passes run inside the training wall: at the test pass's rate
    pred_rate = res.n_test / res.eval_seconds if res.eval_seconds > 0 else 0.0
    valid_s = res.n_valid * len(res.valid_curve) / pred_rate if pred_rate > 0 else 0.0
    try:
        refine_throughput(ws, train_examples=int(seen), step_seconds=step_s, predict_examples=int(pred_n),
                          train_tokens=int(res.train_tokens),
                          predict_seconds=res.eval_seconds + valid_s,
                          overhead_seconds=wall - step_s - res.eval_seconds - valid_s, device_label=res.device,
                          **key)
    except sqlite3.Error:  # the measurement is a convenience; a busy workspace never fails the comparison
        pass


def target_model_train_fn(texts: Sequence[str], y: Sequence[int], classes: Sequence[str], *,
                          model: str | None = None, seed: int = 0, **finetune_options: Any) -> TrainFn:
    """A `TrainFn` that fine-tunes the target model (core.finetune) on the selected rows: the slow, faithful path.

    Pass it as `train_fn` to `core.selection.select_iterative`. The fine-tuned model returns labels, not
    probabilities, so p_model is one-hot on its prediction.
    """
    yy = np.asarray(y, dtype=np.int64)
    names = list(classes)

    def train(train_idx: NDArray[np.int64], score_idx: NDArray[np.int64]) -> NDArray[np.float64]:
        res = finetune.train_and_evaluate([texts[i] for i in train_idx], [names[yy[i]] for i in train_idx],
                                          [texts[i] for i in score_idx], [names[yy[i]] for i in score_idx],
                                          classes=names, model=model, seed=seed, **finetune_options)
        pred = np.asarray([names.index(str(p)) for p in res.predictions], dtype=np.int64)
        P = np.zeros((len(score_idx), len(names)))
        P[np.arange(len(score_idx)), pred] = 1.0
        return P

    train.__name__ = "target_model"
    return train
