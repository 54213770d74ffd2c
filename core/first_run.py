"""The first valuation of a dataset, progressive: a preliminary answer from a stratified sample first, then the rest.

A newcomer's first "Compute values" on the demo (38,158 tweets) used to embed, value, project and cross-fit every
row before anything appeared. `python -m core first-run DATA` (the app starts it as one job) instead:

1. draws a class-stratified sample of `SAMPLE_SIZE` rows (seeded) and embeds it (through the per-text cache) in an
   order whose every prefix is stratified, for at most `SAMPLE_SECONDS` on a cold cache (the rows embedded by then
   are the sample; at least `SAMPLE_MIN`), values it with the chosen method and options, projects it (UMAP) and
   clusters it. These runs are recorded as *preliminary* (params `preliminary: true`, `sample`, `of`), so the map
   and Inspect show them at once, and every page says what they are ("4,000 of 38,158 rows valued; the rest in about 3 min");
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
# seconds of embedding the preliminary sample may take: on a cold cache the sample is what this time embeds (at least
# SAMPLE_MIN rows, at most SAMPLE_SIZE); a warm cache gives the whole SAMPLE_SIZE at once
SAMPLE_SECONDS = float(os.environ.get("WINNOW_FIRST_RUN_SECONDS", 12))
SAMPLE_MIN = 1_000
_CHUNK = 512  # texts embedded between two looks at the clock


def needs_sample(n_rows: int, *, sample_size: int = SAMPLE_SIZE, sample_above: int = SAMPLE_ABOVE) -> bool:
    """Whether the first run of `n_rows` rows starts from a preliminary sample."""
    return n_rows > sample_above and sample_size < n_rows


def sample_positions(labels: Sequence[Any], size: int, seed: int | None = 0) -> NDArray[np.int64]:
    """Sorted positions of a class-stratified sample of `size` rows (every class keeps at least one row)."""
    return sampling.stratified_sample(labels, min(int(size), len(labels)), np.random.default_rng(seed))


def sample_order(labels: Sequence[Any], size: int, seed: int | None = 0) -> NDArray[np.int64]:
    """The positions of `sample_positions(labels, size, seed)` in a seeded order whose every prefix is stratified."""
    pos = sample_positions(labels, size, seed)
    return pos[sampling.stratified_order([labels[i] for i in pos], np.random.default_rng(seed))]


def embed_sample(texts: Sequence[str], order: NDArray[np.int64], *, spec: Any, cache_dir: Any,
                 seconds: float | None = None, min_rows: int | None = None, batch_size: int = 32,
                 on_progress: Any = None) -> NDArray[np.int64]:
    """Embed a time-boxed prefix of `order` (`sample_order`) into the cache; returns its sorted positions.

    The rows are embedded in chunks, in `order`, until `seconds` of embedding have passed (the model's loading
    not counted) and at least `min_rows` rows are embedded (defaults: `SAMPLE_SECONDS`, `SAMPLE_MIN`): the rows embedded by then are the sample, stratified
    because every prefix of `order` is. Texts already in the cache cost nothing, so with a warm cache the sample is
    all of `order` at once; on a cold cache and a slow machine the first map does not wait for every row of it.
    """
    from core import embed

    seconds = SAMPLE_SECONDS if seconds is None else float(seconds)
    min_rows = SAMPLE_MIN if min_rows is None else int(min_rows)
    cache = embed.EmbeddingCache(cache_dir, spec.key)
    missing = cache.lookup([embed.text_key(texts[i]) for i in order]) < 0
    if not missing.any():
        return np.sort(order)
    report = on_progress or (lambda f, message="", partial=None: None)
    report(0.0, f"loading {spec.name}", None)
    encoder = embed.Encoder(spec)
    t0, done = time.perf_counter(), 0
    while done < len(order):
        if done >= min_rows and time.perf_counter() - t0 >= seconds:
            break
        todo = [int(i) for i, m in zip(order[done:done + _CHUNK], missing[done:done + _CHUNK]) if m]
        if todo:
            embed._embed_cached([texts[i] for i in todo], model=encoder, cache_dir=cache_dir,
                                batch_size=batch_size, precision=spec.precision, on_progress=None)
        done = min(done + _CHUNK, len(order))
        left = max(seconds - (time.perf_counter() - t0), 0.0)
        report(done / len(order), f"{done:,} of up to {len(order):,} rows embedded"
               + (f" · at most {format_duration(left)} more" if done < len(order) else ""), None)
    return np.sort(order[:done])


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
