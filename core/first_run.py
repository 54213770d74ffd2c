"""The first valuation of a dataset, progressive: a preliminary answer from a stratified sample first, then the rest.

A newcomer's first "Compute values" on the demo (38,158 tweets) used to embed, value, project and cross-fit every
row before anything appeared. `python -m core first-run DATA` (the app starts it as one job) instead:

1. draws a class-stratified sample of `SAMPLE_SIZE` rows (seeded), embeds it (through the per-text cache), values
   it with the chosen method and options, projects it (UMAP) and clusters it. These runs are recorded as
   *preliminary* (params `preliminary: true`, `sample`, `of`), so the map and Inspect show them at once, and every
   page says what they are ("4,000 of 38,158 rows valued; the rest in about 3 min");
2. carries on with every row: embeds the rest (the sample's texts come from the cache), projects and clusters all
   rows, and values all rows last, with exactly the options and run parameters of `python -m core value`, so the
   full run is the one `value` would have made (and resumes like it). Because the full valuation finishes last,
   its map and clusters already exist when it replaces the preliminary run as the active one;
3. computes the source classifier's cross-fitted predictions (the map's "predicted label").

Every step is idempotent (embedding cache, projection and clusters keyed by embedding and parameters, resumable
valuation checkpoints), so a resumed job picks up where it stopped. Data at or below `SAMPLE_ABOVE` rows skips the
preliminary stage.
"""
from __future__ import annotations

import os
import time
from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from core import sampling
from core.eta import format_duration
from core.workspace import RunRecord, Workspace

SAMPLE_SIZE = int(os.environ.get("WINNOW_FIRST_RUN_SAMPLE", 4_000))  # rows of the preliminary sample
SAMPLE_ABOVE = int(os.environ.get("WINNOW_FIRST_RUN_ABOVE", 6_000))  # rows; smaller data is valued whole at once


def needs_sample(n_rows: int, *, sample_size: int = SAMPLE_SIZE, sample_above: int = SAMPLE_ABOVE) -> bool:
    """Whether the first run of `n_rows` rows starts from a preliminary sample."""
    return n_rows > sample_above and sample_size < n_rows


def sample_positions(labels: Sequence[Any], size: int, seed: int | None = 0) -> NDArray[np.int64]:
    """Sorted positions of a class-stratified sample of `size` rows (every class keeps at least one row)."""
    return sampling.stratified_sample(labels, min(int(size), len(labels)), np.random.default_rng(seed))


def is_preliminary(run: RunRecord | None) -> bool:
    """True for a run of the preliminary stage (values, projection or clusters of the sample)."""
    return bool(run is not None and (run.params or {}).get("preliminary"))


def _key(dataset_id: int) -> str:
    return f"first_run.{int(dataset_id)}"


def state(ws: Workspace, dataset_id: int) -> dict[str, Any] | None:
    """The first run's state for a dataset: phase ("sample", "full", "done"), sample, rows, finish_at, job."""
    got = ws.get_setting(_key(dataset_id))
    return dict(got) if isinstance(got, dict) else None


def set_state(ws: Workspace, dataset_id: int, **fields: Any) -> dict[str, Any]:
    st = state(ws, dataset_id) or {}
    st.update(fields)
    ws.set_setting(_key(dataset_id), st)
    return st


def preliminary_note(ws: Workspace, dataset_id: int, run: RunRecord | None, *, job_active: bool | None = None,
                     now: float | None = None) -> str | None:
    """What a page says above preliminary results, or None when `run` is not preliminary.

    Args:
        run: The values run the page shows.
        job_active: Whether the first-run job still runs (None: read it from the workspace).
    """
    if not is_preliminary(run):
        return None
    assert run is not None
    p = run.params
    head = f"Preliminary: {int(p['sample']):,} of {int(p['of']):,} rows valued (a stratified sample)"
    st = state(ws, dataset_id) or {}
    if job_active is None:
        job_active = False
        if st.get("job"):
            from core import jobs
            from core.errors import WinnowError

            try:
                job_active = jobs.get(ws, st["job"]).active
            except WinnowError:
                job_active = False
    if not job_active:
        return head + "; the run over all rows stopped before it finished: press Compute values to resume it."
    left = st.get("finish_at")
    if left is None:
        return head + "; the rest is being valued now."
    secs = float(left) - (time.time() if now is None else now)
    if secs <= 5:
        return head + "; the rest any moment now."
    return head + f"; the rest in about {format_duration(secs)}."


def estimate_rest(timings: dict[str, float], *, sample: int, rows: int, to_embed: int, embedded_in_sample: int
                  ) -> dict[str, float]:
    """Seconds each remaining stage of the full run should take, scaled from the sample's measured times.

    Valuation (a fixed number of passes over subsets of fixed size), projection and the clustering fit grow about
    linearly with the rows; embedding grows with the texts not in the cache.
    """
    scale = rows / max(sample, 1)
    per_text = timings.get("embed", 0.0) / embedded_in_sample if embedded_in_sample else 0.004
    # umap-learn runs 500 layout epochs below 10,000 rows and 200 above (benchmarks/RESULTS.md, "Measurements
    # behind defaults")
    epochs = 200 / 500 if sample < 10_000 <= rows else 1.0
    project = timings.get("project_fit", timings.get("project", 0.0)) * scale * epochs
    return {"embed": per_text * to_embed, "project": project,
            "cluster": timings.get("cluster", 0.0) * 1.5, "value": timings.get("value", 0.0) * scale}
