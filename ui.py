"""Streamlit helpers shared by the pages: workspace handle, error guard, active dataset, job panel, sidebar.

Imports flow one way: pages -> ui -> core. Nothing here trains or computes; it reads the workspace and starts jobs.
Dataset text is data: show it with st.text / st.code / dataframe cells only, never as Markdown or HTML.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import streamlit as st

from core import jobs
from core.errors import WinnowError
from core.workspace import DatasetRecord, Workspace

DEMO_SOURCE = "demo"


@st.cache_resource
def _workspace(path: str) -> Workspace:
    return Workspace(path)


def workspace() -> Workspace:
    """The workspace of this server ($WINNOW_HOME, else ./workspace); one handle per process."""
    return _workspace(os.environ.get("WINNOW_HOME") or "workspace")


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show a WinnowError as a readable message instead of a traceback."""
    try:
        yield
    except WinnowError as e:
        st.error(str(e), icon=":material/error:")


@st.cache_resource(max_entries=4, show_spinner="Opening the dataset…")
def _load_dataset(ws_path: str, dataset_id: int) -> Any:
    from core import data

    return data.open_dataset(Workspace(ws_path), f"ws:{dataset_id}")


def open_source(source: str, **options: Any) -> int:
    """Load a dataset from a path/name (one core call), make it active, and return its id."""
    from core import data

    ws = workspace()
    loaded = data.open_dataset(ws, source, **options)
    ws.set_setting("active_dataset", loaded.dataset_id)
    st.session_state["data.warnings"] = list(loaded.warnings)
    return loaded.dataset_id


def active_dataset_id() -> int:
    """The active dataset's id; on a fresh workspace, the demo is loaded and becomes active."""
    ws = workspace()
    ds_id = ws.get_setting("active_dataset")
    if ds_id is not None:
        try:
            ws.dataset(ds_id)
            return int(ds_id)
        except WinnowError:
            pass
    with st.spinner("First start: loading the demo tweets…"):
        return open_source(os.environ.get("WINNOW_DEFAULT_SOURCE", DEMO_SOURCE))


def active() -> tuple[DatasetRecord, Any]:
    """(record, datasets.Dataset) of the active dataset."""
    ds_id = active_dataset_id()
    ws = workspace()
    loaded = _load_dataset(str(ws.path), ds_id)
    return ws.dataset(ds_id), loaded.ds


def job_key(name: str, dataset_id: int) -> str:
    return f"job.{name}.{dataset_id}"


def start_job(name: str, dataset_id: int, argv: list[str]) -> str:
    """Start a background step and remember its id in the workspace, so a reload or a new tab finds it."""
    ws = workspace()
    job_id = jobs.start(ws, argv, label=name)
    ws.set_setting(job_key(name, dataset_id), job_id)
    return job_id


def current_job(name: str, dataset_id: int) -> jobs.Job | None:
    """The latest job of this kind for this dataset (running or finished), or None."""
    ws = workspace()
    job_id = ws.get_setting(job_key(name, dataset_id))
    if job_id is None:
        return None
    try:
        return jobs.get(ws, job_id)
    except WinnowError:
        return None


@st.fragment(run_every="2s")
def _poll(job_id: str) -> None:
    job = jobs.get(workspace(), job_id)
    st.progress(job.progress, text=f"{job.label}: {job.message}")
    c1, c2 = st.columns([1, 5])
    if c1.button("Cancel", key=f"cancel.{job_id}", icon=":material/stop:"):
        jobs.cancel(workspace(), job_id)
        st.rerun(scope="app")
    c2.caption(f"`{job.command}` · running in the background: you may close this tab")
    if not job.active:
        st.rerun(scope="app")


def job_panel(job: jobs.Job) -> None:
    """Progress of a running job (polled), or the end state of a finished one with a resume button."""
    if job.active:
        _poll(job.id)
        return
    if job.status == "failed":
        st.error(f"{job.label} failed: {job.message}", icon=":material/error:")
    elif job.status in ("dead", "cancelled"):
        st.warning(f"{job.label} {job.status}: {job.message}", icon=":material/warning:")
        if st.button("Resume from the last checkpoint", key=f"resume.{job.id}", icon=":material/replay:"):
            ws = workspace()
            new_id = jobs.resume(ws, job.id)
            ws.set_setting(job_key(job.label, ws.get_setting("active_dataset")), new_id)
            st.rerun()


def text_block(text: str) -> None:
    """Show dataset text verbatim (never rendered as Markdown or HTML)."""
    st.code(text, language=None, wrap_lines=True)


def sidebar() -> None:
    """Active dataset, active valuation run and decision counts, on every page."""
    ws = workspace()
    with st.sidebar:
        ds_id = ws.get_setting("active_dataset")
        if ds_id is None:
            return
        try:
            rec = ws.dataset(ds_id)
        except WinnowError:
            return
        st.caption("Active dataset")
        st.text(f"{rec.name} · {rec.n_rows:,} rows · {len(rec.classes)} classes")
        run = active_values_run(rec.id)
        st.caption("Active valuation")
        st.text(f"run {run.id}: {run.method}" if run else "none yet (see Value)")
        counts = ws.decision_counts(rec.id)
        st.caption("Decisions")
        st.text(f"{counts['remove']:,} removed · {counts['keep']:,} kept · {counts['relabel']:,} relabel")


def active_values_run(dataset_id: int) -> Any:
    """The valuation run the map and Inspect use: the one the user picked, else the newest finished one."""
    ws = workspace()
    chosen = ws.get_setting(f"active_values.{dataset_id}")
    if chosen is not None:
        try:
            run = ws.run(chosen)
            if run.status == "done":
                return run
        except WinnowError:
            pass
    return ws.latest_run("values", dataset_id=dataset_id)
