"""Helpers every sub-command shares: the DATA argument, embeddings, progress (tqdm + job), tables."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from core import jobs
from core.valuation.base import ProgressFn
from core.workspace import DatasetRecord, Workspace


def add_data_args(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    if positional:
        p.add_argument("data", metavar="DATA",
                       help="file (.csv .tsv .json .jsonl .parquet), `datasets` folder, hub name, demo, sst2 or ws:ID")
    g = p.add_argument_group("data options")
    g.add_argument("--text-col", default=None, help="text column (default: found by name: text, sentence, ...)")
    g.add_argument("--label-col", default=None, help="label column (default: found by name: label, sentiment, ...)")
    g.add_argument("--encoding", default=None, help="file encoding (default: utf-8, then utf-8-sig)")
    g.add_argument("--split", default=None, help="split of a DatasetDict folder or hub dataset (default: train)")
    g.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use a stratified sample of N rows (seeded; handy for a quick try)")
    g.add_argument("--skip-bad-rows", action="store_true",
                   help="leave out CSV/TSV rows with more fields than the header (a warning names them) "
                        "instead of stopping")


def embedding_command(sub: Any, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A sub-command that reads DATA and embeds it: its parser with the DATA and embedding arguments."""
    p = sub.add_parser(name, help=help, description=description)
    add_data_args(p)
    add_embed_args(p)
    return p


def add_embed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedding options")
    g.add_argument("--model", default=None,
                   help="encoder: a local folder or hub name (default: the packaged all-MiniLM-L6-v2)")
    g.add_argument("--precision", choices=("float32", "int8"), default="float32",
                   help="float32 (exact) or int8 (dynamic quantisation; faster, cosine >= 0.99)")
    g.add_argument("--batch-size", type=int, default=32, help="texts per batch (default 32, the fastest measured)")


@dataclass(frozen=True)
class Loaded:
    dataset_id: int
    ds: Any  # datasets.Dataset with uid, text, label (+ metadata)
    classes: list[str]
    record: DatasetRecord
    warnings: list[str]


def open_data(args: argparse.Namespace, ws: Workspace) -> Loaded:
    """Load DATA (instantly when its fingerprint is known), register it and make it the active dataset.

    Warnings (duplicates, conflicting labels) reach the user through `warnings` (one line each in the CLI).
    """
    from core import data

    loaded = data.open_dataset(ws, args.data, text_col=getattr(args, "text_col", None),
                               label_col=getattr(args, "label_col", None), encoding=getattr(args, "encoding", None),
                               split=getattr(args, "split", None), limit=getattr(args, "limit", None),
                               skip_bad_rows=getattr(args, "skip_bad_rows", False))
    if not ws.read_only:  # reading steps work on a read-only workspace
        ws.set_setting("active_dataset", loaded.dataset_id)
    return Loaded(dataset_id=loaded.dataset_id, ds=loaded.ds, classes=list(loaded.classes), record=loaded.record,
                  warnings=list(loaded.warnings))


def get_embeddings(args: argparse.Namespace, ws: Workspace, loaded: Loaded,
                   on_progress: ProgressFn | None = None) -> tuple[int, np.ndarray]:
    """The dataset's embeddings (workspace, else cache, else computed), computed by one process at a time: a step
    that needs embeddings another job is computing waits for it and reuses them (`jobs.exclusive`)."""
    from core import data, embed

    model, precision = getattr(args, "model", None), getattr(args, "precision", "float32")
    spec = embed.resolve_model(model, precision)
    with jobs.exclusive(ws, f"embed-{loaded.dataset_id}-{spec.key}", what="embedding",
                        job_id=getattr(args, "job", None), on_wait=on_progress) as step:
        return embed.ensure_embeddings(ws, loaded.dataset_id, data.column(loaded.ds, "text"), model=model,
                                       precision=precision, batch_size=getattr(args, "batch_size", 32),
                                       on_progress=step.track(on_progress),
                                       scheduler=getattr(args, "scheduler", None))


def embedding_share(args: argparse.Namespace, ws: Workspace, loaded: Loaded, *, uncached: float = 0.6) -> float:
    """The share of a step's progress bar to give embedding: tiny when the workspace has them, else `uncached`."""
    from core import embed

    spec = embed.resolve_model(getattr(args, "model", None), getattr(args, "precision", "float32"))
    return 0.02 if ws.embedding(loaded.dataset_id, spec.key) is not None else uncached


class Progress:
    """A ProgressFn that drives a tqdm bar on stderr and, inside a job, the job's progress in the workspace.

    `stage(start, end)` returns a ProgressFn mapping its [0, 1] onto [start, end] of the whole step. Every message
    carries the time left in its stage (`core.eta`), measured from that stage's own rate, so the CLI's bar and the
    app's job panel show the same estimate.
    """

    def __init__(self, ws: Workspace, job_id: str | None, desc: str, *, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        from core.eta import Eta

        self.ws, self.job_id, self.desc = ws, job_id, desc
        self.bar = tqdm(total=1000, desc=desc, disable=not enabled, file=sys.stderr, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}")
        self._last = 0
        self._eta = Eta()
        self.message = ""

    def __call__(self, fraction: float, message: str = "", partial: Any = None, *, eta: str | None = None) -> None:
        from core.eta import with_eta

        fraction = min(max(fraction, 0.0), 1.0)
        pos = int(round(fraction * 1000))
        if pos > self._last:
            self.bar.update(pos - self._last)
            self._last = pos
        text = with_eta(message or self.desc, self._eta.text(fraction) if eta is None else eta)
        self.message = text
        self.bar.set_postfix_str(text[:90], refresh=False)
        jobs.report(self.ws, self.job_id, fraction, text)

    def stage(self, start: float, end: float, label: str = "") -> ProgressFn:
        from core.eta import Eta

        eta = Eta()

        def fn(fraction: float, message: str = "", partial: Any = None) -> None:
            f = min(max(fraction, 0.0), 1.0)
            msg = f"{label}: {message}" if label and message else (message or label)
            self(start + (end - start) * f, msg, partial, eta=eta.text(f))
        return fn

    def close(self, message: str = "done") -> None:
        self(1.0, message, eta="")
        jobs.report(self.ws, self.job_id, 1.0, message, force=True)
        self.bar.close()


def progress(args: argparse.Namespace, ws: Workspace, desc: str) -> Progress:
    return Progress(ws, getattr(args, "job", None), desc)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *, floatfmt: str = ".4g",
                file: Any = None) -> None:
    """Print dict rows as an aligned plain-text table (markdown-compatible pipes)."""
    file = file or sys.stdout
    if not rows:
        print("(none)", file=file)
        return
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "nan" if np.isnan(v) else format(float(v), floatfmt)
        return "" if v is None else str(v).replace("\n", " ")

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |", file=file)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=file)
    for row in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |", file=file)


def when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
