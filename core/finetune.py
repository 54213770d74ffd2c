"""Fine-tune a sequence classifier on a subset and score it on a test set (a leaf: no workspace, no selection).

`train_and_evaluate` fine-tunes any `transformers` model for sequence classification (default: the packaged
all-MiniLM-L6-v2 with a fresh head) with a plain torch loop: AdamW, linear schedule with warmup, dynamic padding,
length-grouped batches, early stopping on a validation split carved from the training rows, and scores a held-out
test set. The comparison over subsets and seeds lives one level up, in `core.experiment`.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import sampling
from core.device import Device, autocast, batch_size_for, seeded, select_device
from core.errors import DataError, ModelError

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
        valid_curve: (evaluation, validation loss, validation accuracy) after each pass over the rows (or every
            `eval_every` steps); empty without validation.
        epochs_run: Validation evaluations done (= epochs trained by default; fewer than asked after early
            stopping); without validation, passes over the rows.
        best_epoch: Evaluation whose weights were kept and tested (the last one without validation).
        train_seconds: Wall time of the training loop (tokenisation and validation passes included).
        examples_per_second: Training examples processed per second of pure training steps.
        n_train: Rows trained on (after the validation split was carved out).
        n_valid: Rows of the validation split (0 if none).
        n_test: Rows of the test set.
        steps: Optimizer steps taken.
        train_tokens: Token positions the training steps processed, padding included (what their time is
            proportional to; `core.experiment` estimates durations from it).
        train_examples: Examples the training steps processed (a short last batch counts its own rows).
        step_seconds: Seconds of pure training steps (`train_examples / examples_per_second`).
        device: Where it trained, e.g. "cpu (2 threads)" or "cuda (NVIDIA H200, bf16)".
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
    steps: int = 0
    device: str = "cpu"
    train_tokens: int = 0
    train_examples: int = 0
    step_seconds: float = 0.0

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
            "steps": self.steps,
            "device": self.device,
            "train_tokens": self.train_tokens,
            "train_examples": self.train_examples,
            "step_seconds": self.step_seconds,
            "per_class": {k: asdict(v) for k, v in self.per_class.items()},
        }


# --------------------------------------------------------------------------------------------------- model


def default_model_path() -> str:
    """The packaged all-MiniLM-L6-v2 folder (core.embed's choice when it exists)."""
    from core.embed import default_model_path as _embed_default

    return str(_embed_default())


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


def padded_tokens_per_example(lengths: Sequence[int] | np.ndarray, n_rows: int, batch_size: int,
                              seed: int = 0) -> float:
    """Token positions a training step processes per example, padding included, when `n_rows` rows whose token
    lengths are distributed like `lengths` are cut into `length_grouped_batches`: the batching of
    `train_and_evaluate`, simulated (rows drawn from `lengths`, with replacement past its size).

    Fewer rows sort into fewer, wider length bands, so a small subset pads more per example than a large one.
    """
    lens = np.asarray(lengths, dtype=np.int64)
    if len(lens) == 0 or n_rows < 1:
        return 0.0
    rng = np.random.default_rng(seed)
    drawn = lens[rng.choice(len(lens), size=int(n_rows), replace=int(n_rows) > len(lens))]
    batches = length_grouped_batches(drawn, int(batch_size), rng)
    return float(sum(int(drawn[b].max()) * len(b) for b in batches) / len(drawn))


def token_lengths(texts: Sequence[str], *, model: str | os.PathLike[str] | None = None,
                  max_length: int = 128) -> np.ndarray:
    """Tokens per text (after truncation at `max_length`) under the model's tokenizer: (n,) int64."""
    from transformers import AutoTokenizer

    path = str(model) if model is not None else default_model_path()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the tokenizer of {path}: {e}") from e
    ids = _encode(tokenizer, [str(t) for t in texts], max_length)
    return np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))


def _scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> tuple[float, float,
                                                                                     dict[str, ClassScore]]:
    """(accuracy, macro F1 over the classes seen in truth or prediction, per-class scores): sklearn.metrics."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels = np.arange(len(classes))
    if len(y_true) == 0:
        return 0.0, 0.0, {c: ClassScore(0.0, 0.0, 0.0, 0) for c in classes}
    prec, rec, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    seen = np.isin(labels, np.union1d(y_true, y_pred))
    accuracy = float(accuracy_score(y_true, y_pred))
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

    Two threads on two cores that other processes also use run much slower than one (each op's thread barrier
    waits for the descheduled thread; benchmarks/RESULTS.md, Fine-tuning), so a busy machine gets fewer threads.
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
             device: Device | None = None) -> tuple[np.ndarray, float]:
    """Predicted codes (n,) and mean cross-entropy against `y` (nan when y is None); length-sorted batches."""
    import torch

    dev = device or Device("cpu")

    lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    pred = np.empty(len(ids), dtype=np.int64)
    loss_sum = 0.0
    net.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            inp, mask = _collate(ids, rows, pad_id)
            if dev.is_cuda:
                inp, mask = inp.to(dev.name, non_blocking=True), mask.to(dev.name, non_blocking=True)
            with autocast(dev):
                logits = net(input_ids=inp, attention_mask=mask).logits.float()
            pred[rows] = logits.argmax(-1).cpu().numpy()
            if y is not None:
                loss_sum += float(torch.nn.functional.cross_entropy(
                    logits, torch.as_tensor(y[rows], device=logits.device), reduction="sum"))
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
    batch_size: int | None = 32,
    lr: float = 5e-5,
    max_length: int = 128,
    seed: int = 0,
    valid_fraction: float = 0.1,
    early_stopping_patience: int = 1,
    warmup_ratio: float = 0.06,
    weight_decay: float = 0.01,
    threads: int | None = None,
    max_steps: int | None = None,
    eval_every: int | None = None,
    device: str | None = None,
    require_test_classes: bool = True,
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
        epochs: Maximum epochs (the schedule is planned over all of them); ignored when `max_steps` is given.
        batch_size: Training batch size; the test pass uses twice that. None: 32 on CPU, from free memory on
            CUDA (`core.device.batch_size_for`).
        lr: Peak AdamW learning rate of the linear warmup/decay schedule.
        max_length: Tokens per text after truncation.
        seed: Seeds the head's initialisation, dropout, the validation split and the batch order.
        valid_fraction: Share of the training rows held out for early stopping; 0 (or too few rows, under 20
            or under one per class) trains on all rows and keeps the last epoch.
        early_stopping_patience: Epochs without validation improvement before stopping; 0 never stops early.
        threads: torch CPU threads; None = the cores this process may use minus those busy with other work
            (1-minute load average), at least 1. Restored afterwards.
        max_steps: Train exactly this many optimizer steps (passes over the rows repeat as needed; the schedule
            is planned over them): the *equal steps* protocol of `core.experiment.compare`. None: `epochs` passes.
        eval_every: Score the validation split every this many steps (default: once per pass over the rows);
            early stopping counts these evaluations.
        device: "cpu", "cuda", "cuda:N" or None (CUDA when available, else CPU; see `core.device`). CPU results
            are unchanged by the GPU path; on CUDA, bf16 autocast where supported.
        require_test_classes: Raise when a test class never occurs in the training rows (default); False trains
            anyway (the head still has every class; `core.experiment.compare` warns instead).
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
    from sklearn.metrics import accuracy_score

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
    if max_steps is not None and max_steps < 1:
        raise DataError(f"max_steps must be at least 1 (got {max_steps})")
    classes = [str(c) for c in classes]
    y_all = _codes(train_labels, classes, "training")
    y_test = _codes(eval_labels, classes, "test")
    missing = sorted(set(y_test.tolist()) - set(y_all.tolist()))
    if missing and require_test_classes:
        names = [classes[i] for i in missing]
        raise DataError(f"test labels {names} never occur in the training subset ({len(y_all)} rows); "
                        "add rows of these classes or drop them from the test set")
    texts_all = [str(t) for t in train_texts]
    texts_test = [str(t) for t in eval_texts]

    rng = np.random.default_rng(seed)
    n_classes_present = len(np.unique(y_all))
    if valid_fraction > 0 and len(y_all) >= 20 and int(round(valid_fraction * len(y_all))) >= n_classes_present:
        tr_idx, va_idx = sampling.stratified_split(y_all, int(round(valid_fraction * len(y_all))), rng)
    else:
        tr_idx, va_idx = np.arange(len(y_all)), np.array([], dtype=np.int64)

    n_threads = int(threads) if threads else _default_threads()
    dev = select_device(device, threads=n_threads)
    batch_size = batch_size_for(dev, batch_size, max_length=max_length)
    params: dict[str, Any] = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "max_length": max_length, "seed": seed,
        "valid_fraction": valid_fraction, "early_stopping_patience": early_stopping_patience,
        "warmup_ratio": warmup_ratio, "weight_decay": weight_decay, "classes": classes,
        "max_steps": max_steps, "eval_every": eval_every, "device": dev.label,
    }
    old_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    params["threads"] = n_threads
    try:
        with seeded(dev, seed):  # seeds torch without leaking into the caller's RNG state
            tokenizer, net, model_path = _load_model(model, classes)
            if dev.is_cuda:
                net.to(dev.name)
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
            total_steps = int(max_steps) if max_steps is not None else steps_per_epoch * epochs
            n_passes = math.ceil(total_steps / steps_per_epoch)
            check_every = int(eval_every) if eval_every else steps_per_epoch
            warmup = int(round(warmup_ratio * total_steps))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _linear_warmup(warmup, total_steps))

            loss_curve: list[tuple[int, float]] = []
            valid_curve: list[tuple[int, float, float]] = []
            log_every = max(1, total_steps // 200)
            step, run_loss, run_n = 0, 0.0, 0
            step_seconds, seen, tokens = 0.0, 0, 0
            best: tuple[float, float] | None = None
            best_state: dict[str, Any] | None = None
            best_epoch, bad_epochs, epochs_run = 0, 0, 0
            y_train_t = torch.as_tensor(y_train, device=dev.name if dev.is_cuda else None)
            n_checks = 0  # validation evaluations so far; `best_epoch` and `epochs_run` count them
            stop = False

            def check() -> bool:
                """Score the validation split; True when early stopping says stop."""
                nonlocal best, best_state, best_epoch, bad_epochs, n_checks
                n_checks += 1
                pred_v, loss_v = _predict(net, ids_valid, pad_id, batch_size * 2, y_valid, dev)
                acc_v = float(accuracy_score(y_valid, pred_v))
                valid_curve.append((n_checks, loss_v, acc_v))
                net.train()
                if best is None or (acc_v, -loss_v) > best:
                    best, best_epoch, bad_epochs = (acc_v, -loss_v), n_checks, 0
                    best_state = copy.deepcopy(net.state_dict()) if step < total_steps else None
                    return False
                bad_epochs += 1
                return early_stopping_patience > 0 and bad_epochs >= early_stopping_patience

            for epoch in range(1, n_passes + 1):
                net.train()
                for rows in length_grouped_batches(lengths, batch_size, rng):
                    t0 = time.perf_counter()
                    inp, mask = _collate(ids_train, rows, pad_id)
                    if dev.is_cuda:
                        inp, mask = inp.to(dev.name, non_blocking=True), mask.to(dev.name, non_blocking=True)
                    with autocast(dev):
                        out = net(input_ids=inp, attention_mask=mask)
                    loss = torch.nn.functional.cross_entropy(out.logits.float(), y_train_t[rows])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    if dev.is_cuda:
                        torch.cuda.synchronize(dev.name)
                    step_seconds += time.perf_counter() - t0
                    seen += len(rows)
                    tokens += int(inp.numel())
                    step += 1
                    run_loss += float(loss.detach())
                    run_n += 1
                    if step % log_every == 0 or step == total_steps:
                        loss_curve.append((step, run_loss / run_n))
                        run_loss, run_n = 0.0, 0
                        if on_progress is not None:
                            on_progress(step / total_steps, f"epoch {epoch}/{n_passes} step {step}/{total_steps} "
                                                           f"loss {loss_curve[-1][1]:.4f} on {dev.name}")
                    if len(ids_valid) and (step % check_every == 0 or step == total_steps):
                        stop = check()
                    if step >= total_steps or stop:
                        break
                if run_n:
                    loss_curve.append((step, run_loss / run_n))
                    run_loss, run_n = 0.0, 0
                epochs_run = epoch
                if len(ids_valid) == 0:
                    best_epoch = epoch
                if step >= total_steps or stop:
                    break
            if len(ids_valid):
                epochs_run = n_checks
            if best_state is not None and best_epoch != n_checks:
                net.load_state_dict(best_state)
            train_seconds = time.perf_counter() - t_train
            t_eval = time.perf_counter()
            ids_test = _encode(tokenizer, texts_test, max_length)
            pred, _ = _predict(net, ids_test, pad_id, batch_size * 2, device=dev)
            eval_seconds = time.perf_counter() - t_eval
            accuracy, macro_f1, per_class = _scores(y_test, pred, classes)
            result = FinetuneResult(
                accuracy=accuracy, macro_f1=macro_f1, per_class=per_class, loss_curve=loss_curve,
                valid_curve=valid_curve, epochs_run=epochs_run, train_seconds=train_seconds,
                examples_per_second=seen / step_seconds if step_seconds > 0 else 0.0, n_train=len(ids_train),
                params=params, best_epoch=best_epoch, n_valid=len(ids_valid), n_test=len(ids_test),
                eval_seconds=eval_seconds, predictions=[classes[i] for i in pred], steps=step,
                device=dev.label, train_tokens=tokens, train_examples=seen, step_seconds=step_seconds)
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
