"""An ETA on every progress bar (issue 17): embedding, valuation, projection, clustering and fine-tuning each report
their progress often enough, through the CLI's `Progress`, for the bar and the app's job panel to say the time left.

A fake clock advances a few seconds per reading, so every stage looks slow enough to be estimated; each test drives
the real step function and reads the messages the job recorded (what the app's job panel shows)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tiny_text import FAST, make_texts, tiny_bert  # noqa: F401 (a fixture)

LEFT = re.compile(r" · about .+ left$")


class _Clock:
    """Three seconds pass between two readings."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 3.0
        return self.t


@pytest.fixture
def job_messages(ws, monkeypatch):
    """A Progress inside a job, on the fake clock; returns (progress, messages the job recorded)."""
    from core import jobs
    from core.cli.common import Progress

    monkeypatch.setattr("core.eta.time.monotonic", _Clock())
    seen: list[str] = []
    real = jobs.report

    def report(ws_, job_id, fraction, message, **kw):
        seen.append(message)
        return real(ws_, job_id, fraction, message, **kw)

    monkeypatch.setattr(jobs, "report", report)
    ws._job_insert("j1", ["x", "demo"], "x", "/dev/null")
    return Progress(ws, "j1", "step", enabled=False), seen


def _with_eta(seen: list[str], label: str) -> list[str]:
    return [m for m in seen if m.startswith(label + ":") and LEFT.search(m)]


def test_clustering_says_the_time_left(job_messages):
    from core.selection.clusters import fit_clusters

    prog, seen = job_messages
    X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    fit_clusters(X, seed=0, k_grid=(2, 3, 4, 5), on_progress=prog.stage(0.0, 1.0, "clusters"))
    assert _with_eta(seen, "clusters"), seen


def test_embedding_says_the_time_left(job_messages, tiny_bert):  # noqa: F811
    from core import embed

    prog, seen = job_messages
    texts, _ = make_texts(40)
    embed.Encoder(str(tiny_bert)).encode(texts, batch_size=4, on_progress=prog.stage(0.0, 1.0, "embedding"))
    assert _with_eta(seen, "embedding"), seen


def test_valuation_says_the_time_left(job_messages):
    from core.valuation.base import Split
    from core.valuation.ts_dshapley import ts_dshapley

    def blobs(n: int, seed: int) -> Split:
        rng = np.random.default_rng(seed)
        y = np.arange(n) % 3
        X = rng.normal(0, 4.0, size=(3, 8))[y] + rng.normal(size=(n, 8))
        return Split(np.array([f"r{seed}-{i}" for i in range(n)]), X, y.astype(np.int64))

    prog, seen = job_messages
    train, valid = blobs(80, 0), blobs(30, 1)
    ts_dshapley(train, valid=valid, n_passes=4, subset_size=20, n_permutations=2, n_jobs=1, seed=0,
                on_progress=prog.stage(0.0, 1.0, "valuation"))
    assert _with_eta(seen, "valuation"), seen


def test_fine_tuning_says_the_time_left(job_messages, tiny_bert):  # noqa: F811
    from core.finetune import train_and_evaluate

    prog, seen = job_messages
    Xt, yt = make_texts(40)
    Xe, ye = make_texts(16, seed=1)
    train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert,
                       on_progress=prog.stage(0.0, 1.0, "fine-tuning"), **FAST)
    assert _with_eta(seen, "fine-tuning"), seen


def test_projection_says_the_time_left(job_messages):
    """UMAP reports nothing itself: the map's bar follows the last map's measured rate, and says the time left."""
    import time

    from core import projection

    prog, seen = job_messages
    with projection._ticking(prog.stage(0.0, 1.0, "map"), 0.1, 0.9, 60.0, "UMAP"):
        time.sleep(2.6)  # (real time: the ticks come once a second)
    assert _with_eta(seen, "map"), seen
