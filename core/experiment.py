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

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from core import decisions, finetune
from core.errors import Cancelled, DataError
from core.finetune import DEFAULT_EVAL_FRACTION, DEFAULT_EVAL_MAX, EVAL_SPLIT_SEED, FinetuneProgress
from core.selection import select_kmq
from core.selection.store import load_clusters
from core.selection.strategies import TrainFn, resolve_budget

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
    y = np.unique(np.asarray([str(v) for v in labels]), return_inverse=True)[1]
    return finetune._stratified_split(y, fraction, np.random.default_rng(seed), max_rows=max_rows)


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
                            "top-value:B:VALUES_RUN_ID, kmq:B (B = a row count, a fraction like 0.5, or 30%)")
        if kind in ("random", "kmq") and p.count(":") != 1 or kind == "selection" and p.count(":") != 1 \
                or kind == "top-value" and p.count(":") != 2 or kind in ("full", "curated") and ":" in p:
            raise DataError(f"malformed subset {p!r}; e.g. random:0.5, selection:12, top-value:0.7:5, kmq:2000")
        if p not in out:
            out.append(p)
    if not out:
        raise DataError("no subsets given; e.g. --subsets full,random:0.5,curated")
    return out


SUBSET_KINDS = ("full", "random", "curated", "selection", "top-value", "kmq")


def _budget(text: str, n: int) -> int:
    return resolve_budget(text, n)


def resolve_subset(ws: Workspace | None, dataset_id: int | None, spec: str, pool: pd.DataFrame, *,
                   seed: int = 0) -> SubsetRows:
    """The training rows of one subset spec, drawn from `pool` (the data minus the test rows).

    Specs: ``full``; ``random:B`` (B rows drawn uniformly, a new draw per seed); ``curated`` (the pool minus rows
    whose current decision is "remove"); ``selection:RUN_ID`` (a saved subset: the uids of that run's frame);
    ``top-value:B:VALUES_RUN_ID`` (the B highest-valued rows of a valuation run); ``kmq:B`` (kMQ on the newest
    clusters run of the dataset). B is a count (500), a fraction (0.5) or a percentage (30%) of the pool.

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
        removed = decisions.current(ws, dataset_id).removed
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
        dropped = len(set(want)) - len(chosen)
        if dropped:
            note = f"{dropped} rows of the selection are test rows or not in the data and were left out"
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
    elif kind == "kmq":
        chosen, note = _kmq_subset(ws, dataset_id, rest, pool, seed)
    else:
        raise DataError(f"unknown subset {spec!r}")
    if len(chosen) == 0:
        raise DataError(f"subset {spec!r} has no rows left for training (the test rows are excluded)")
    return SubsetRows(spec, [str(u) for u in chosen], note)


def _run_id(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"subset {spec!r}: {text!r} is not a run id (an integer)") from None


def _kmq_subset(ws: Workspace | None, dataset_id: int | None, budget: str, pool: pd.DataFrame,
                seed: int) -> tuple[np.ndarray, str]:
    if ws is None or dataset_id is None:
        raise DataError("a kmq subset needs a workspace dataset with clusters")
    run = ws.latest_run("clusters", dataset_id=dataset_id)
    if run is None:
        raise DataError(f"dataset {dataset_id} has no clusters yet; run `python -m core cluster` first")
    clusters = load_clusters(ws, run.id)
    uids = pool["uid"].to_numpy().astype(str)
    test = np.setdiff1d(clusters.uids.astype(str), uids)
    X = None
    if run.embedding_id is not None:
        rec = ws.embedding_by_id(run.embedding_id)
        X = np.asarray(ws.read_array(rec.relpath))
        if X.shape[0] != len(clusters.uids):
            X = None
    classes = sorted(set(pool["label"]))
    lab = dict(zip(pool["uid"], pool["label"]))
    y = None
    if X is not None:
        # rows outside the pool (the test rows) get any label: they are removed and never drawn
        y = np.array([classes.index(lab[u]) if u in lab else 0 for u in clusters.uids.astype(str)])
    b = _budget(budget, len(uids))
    sel = select_kmq(None, clusters, budget=b, removed=list(test), seed=seed, X=X, y=y, classes=classes)
    return np.sort(sel.uids.astype(str)), f"kMQ on clusters run {run.id} (k={clusters.k}), seed {seed}"


def _load_eval(path: str) -> pd.DataFrame:
    from core.data import load_dataset

    return _frame(load_dataset(path).ds)


def _load_data(ws: Workspace, dataset_id: int) -> pd.DataFrame:
    from core.data import open_dataset

    return _frame(open_dataset(ws, f"ws:{dataset_id}").ds)


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarize_compare(checkpoints: Mapping[str, Any], subsets: Sequence[str]) -> list[dict[str, Any]]:
    """One row per subset: runs, rows, mean and sample std of accuracy and macro-F1 over seeds."""
    rows = []
    for spec in subsets:
        runs = [v for k, v in checkpoints.items() if k.rsplit("|", 1)[0] == spec]
        if not runs:
            continue
        acc_m, acc_s = _mean_std([r["accuracy"] for r in runs])
        f1_m, f1_s = _mean_std([r["macro_f1"] for r in runs])
        n_rows = sorted({int(r["n_rows"]) for r in runs})
        rows.append({"subset": spec, "runs": len(runs), "rows": n_rows[0] if len(n_rows) == 1 else n_rows,
                     "n_train": int(np.mean([r["n_train"] for r in runs])),
                     "accuracy_mean": acc_m, "accuracy_std": acc_s, "macro_f1_mean": f1_m, "macro_f1_std": f1_s,
                     "train_seconds": float(np.mean([r["train_seconds"] for r in runs]))})
    return rows


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
    model: str | None = None,
    batch_size: int = 32,
    lr: float = 5e-5,
    max_length: int = 128,
    valid_fraction: float = 0.1,
    early_stopping_patience: int = 1,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    eval_max: int = DEFAULT_EVAL_MAX,
    threads: int | None = None,
    resume: bool = True,
    job_id: str | None = None,
    on_progress: FinetuneProgress | None = None,
) -> int:
    """Fine-tune every (subset x seed) and record mean and spread per subset as a "compare" run.

    Each finished fine-tune is saved as checkpoint ``"<subset>|<seed>"`` (its metrics) and as a child "finetune"
    run; a new call with the same parameters resumes the newest unfinished run with them and trains only what is
    missing. The test set is `eval_path` / `eval_data` if given, else a stratified `eval_fraction` of the data (at
    most `eval_max` rows, the same for every subset and seed) that is excluded from every training subset.

    Args:
        ws: The workspace.
        dataset_id: The registered dataset the subsets come from.
        subsets: Subset specs (see `resolve_subset`), a list or one comma-separated string.
        eval_path: A labelled test file (anything `core.data.load_dataset` reads).
        eval_data: The test set as a Dataset/DataFrame (uid, text, label); overrides `eval_path`.
        data: The dataset's rows (Dataset/DataFrame with uid, text, label) when already loaded; else reopened
            from the workspace.
        seeds: A count n (seeds 0..n-1) or the seeds themselves.
        epochs, model, batch_size, lr, max_length, valid_fraction, early_stopping_patience, threads: Passed to
            `finetune.train_and_evaluate`.
        resume: Continue an unfinished run with the same parameters (default); False always starts afresh.
        job_id: The background job running this (its run id and progress are recorded).
        on_progress: (fraction, message) over the whole experiment.

    Returns:
        The compare run id; its result holds ``table`` (one row per subset: runs, rows, accuracy and macro-F1
        mean and std) and its run frame one row per (subset, seed).

    Raises:
        DataError: Bad subset specs, an empty subset, test labels absent from a subset, an empty test set.
        ModelError: The model cannot be loaded.
    """
    import pandas as pd

    from core import jobs

    specs = parse_subsets(subsets)
    seed_list = list(range(int(seeds))) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    if not seed_list:
        raise DataError("no seeds given; use --seeds 3 or more for a mean and spread")
    df = _frame(data) if data is not None else _load_data(ws, dataset_id)
    if eval_data is not None or eval_path is not None:
        test = _frame(eval_data) if eval_data is not None else _load_eval(str(eval_path))
        pool = df
        eval_desc: Any = {"file": str(eval_path)} if eval_data is None else {"given": len(test)}
    else:
        pool_idx, test_idx = held_out_split(df["label"].tolist(), fraction=eval_fraction, max_rows=eval_max)
        if len(test_idx) == 0:
            raise DataError(f"the data has too few rows ({len(df)}) to hold out a test set; pass --eval FILE")
        pool, test = df.iloc[pool_idx].reset_index(drop=True), df.iloc[test_idx].reset_index(drop=True)
        eval_desc = {"held_out": eval_fraction, "max": eval_max, "seed": EVAL_SPLIT_SEED}
    classes = sorted(set(df["label"]) | set(test["label"]))
    params = {"subsets": specs, "seeds": seed_list, "epochs": epochs, "model": model, "batch_size": batch_size,
              "lr": lr, "max_length": max_length, "valid_fraction": valid_fraction,
              "early_stopping_patience": early_stopping_patience, "eval": eval_desc}
    existing = ws.find_resumable("compare", dataset_id=dataset_id, method="compare", params=params) \
        if resume else None
    if existing is not None:
        run_id = existing.id
        ws.update_run(run_id, status="running")
    else:
        run_id = ws.create_run("compare", dataset_id=dataset_id, method="compare", params=params, job_id=job_id)
    jobs.attach_run(ws, job_id, run_id)
    done = ws.checkpoints(run_id)
    todo = [(s, seed) for s in specs for seed in seed_list]
    n_total = len(todo)
    t0 = time.perf_counter()
    prev = float(existing.seconds or 0.0) if existing is not None else 0.0
    report = on_progress or (lambda f, m: None)
    lab = dict(zip(pool["uid"], zip(pool["text"], pool["label"])))
    try:
        resolved: dict[str, SubsetRows] = {}
        for i, (spec, seed) in enumerate(todo):
            key = f"{spec}|{seed}"
            if key in done:
                continue
            cache_key = spec if not spec.startswith(("random:", "kmq:")) else key
            if cache_key not in resolved:
                resolved[cache_key] = resolve_subset(ws, dataset_id, spec, pool, seed=seed)
            sub = resolved[cache_key]
            texts = [lab[u][0] for u in sub.uids]
            labels = [lab[u][1] for u in sub.uids]

            def step(frac: float, msg: str, _i: int = i, _key: str = key) -> None:
                report((_i + frac) / n_total, f"[{_i + 1}/{n_total}] {_key}: {msg}")

            report(i / n_total, f"[{i + 1}/{n_total}] {key}: {len(texts)} rows")
            res = finetune.train_and_evaluate(texts, labels, test["text"].tolist(), test["label"].tolist(),
                                     classes=classes, model=model, epochs=epochs, batch_size=batch_size, lr=lr,
                                     max_length=max_length, seed=seed, valid_fraction=valid_fraction,
                                     early_stopping_patience=early_stopping_patience, threads=threads,
                                     on_progress=step)
            metrics = dict(res.summary(), subset=spec, seed=seed, n_rows=len(sub.uids), note=sub.note)
            ws.save_checkpoint(run_id, key, metrics)
            done[key] = metrics
            child = ws.create_run("finetune", dataset_id=dataset_id, method=spec,
                                  params=dict(res.params, subset=spec), parent_id=run_id, job_id=job_id)
            ws.update_run(child, status="done", result=res.to_dict(), seconds=res.train_seconds)
            ws.update_run(run_id, result={"table": summarize_compare(done, specs), "n_done": len(done)},
                          seconds=prev + time.perf_counter() - t0)
            report((i + 1) / n_total, f"[{i + 1}/{n_total}] {key} finished: accuracy {res.accuracy:.4f}")
    except BaseException as e:
        cancelled = isinstance(e, (KeyboardInterrupt, Cancelled))
        ws.update_run(run_id, status="cancelled" if cancelled else "failed",
                      result={"error": "" if cancelled else str(e), "n_done": len(done)})
        raise
    table = summarize_compare(done, specs)
    frame = pd.DataFrame([{k: v for k, v in m.items() if k != "per_class"} for m in done.values()])
    ws.save_run_frame(run_id, frame)
    ws.update_run(run_id, status="done", seconds=prev + time.perf_counter() - t0,
                  result={"table": table, "n_done": len(done), "n_test": len(test), "classes": classes,
                          "error": ""})
    report(1.0, "done")
    return run_id


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
