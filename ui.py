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
    _through_app()
    return _workspace(os.environ.get("WINNOW_HOME") or "workspace")


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Show a WinnowError as a readable message instead of a traceback."""
    try:
        yield
    except WinnowError as e:
        st.error(plain(str(e)), icon=":material/error:")  # messages may quote dataset text


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
    st.session_state["data.warnings"] = {loaded.dataset_id: list(loaded.warnings)}  # this load's, for this dataset
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
    if job.argv[:1] == ["first-run"]:  # its preliminary results land mid-job: redraw the page when they do
        from core import first_run

        ds = active_dataset_id()
        phase = (first_run.state(workspace(), ds) or {}).get("phase")
        key = f"poll.first_run.{job_id}"
        if key in st.session_state and st.session_state[key] != phase:
            st.session_state[key] = phase
            st.rerun(scope="app")
        st.session_state[key] = phase
    st.progress(job.progress, text=plain(f"{job.label}: {job.message}"))
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
        st.error(plain(f"{job.label} failed: {job.message}"), icon=":material/error:")
    elif job.status in ("dead", "cancelled"):
        st.warning(plain(f"{job.label} {job.status}: {job.message}"), icon=":material/warning:")
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
        st.text(f"run {run.number}: {run.method}" if run else "none yet (see Value)")
        slot = st.empty()  # a fragment that decides redraws this in place (sidebar_decisions_in_fragment)
        st.session_state[_DECISIONS_SLOT] = slot
        with slot.container():
            decisions_panel(rec.id)


_DECISIONS_SLOT = "_ui.sidebar_decisions"


def decisions_panel(dataset_id: int, undo_key: str = "sidebar.undo") -> None:
    """The decision counts and the Undo button (the sidebar's)."""
    state = decision_state(dataset_id)
    counts = state.counts
    st.caption("Decisions")
    st.text(f"{counts.get('remove', 0):,} removed · {counts.get('keep', 0):,} kept · "
            f"{counts.get('relabel', 0):,} relabel")
    if state.version > 0:
        undo_button(dataset_id, key=undo_key)


def sidebar_decisions_in_fragment(dataset_id: int) -> None:
    """Redraw the sidebar's decision counts and Undo from inside a fragment (the Map's), on each of its runs.

    Streamlit keeps a fragment's writes to a container of the full run (here the sidebar's slot) in place, so a
    decision taken in the fragment updates the sidebar in the fragment's own rerun, without a second, whole-app run
    (which would copy the map's selection payload again). On a full run the slot is drawn twice (the sidebar, then
    this); the Undo button here has its own key."""
    slot = st.session_state.get(_DECISIONS_SLOT)
    if slot is not None:
        with slot.container():
            decisions_panel(dataset_id, undo_key="sidebar.undo.fragment")


def decision_state(dataset_id: int) -> Any:
    """The decisions of a dataset now (core.decisions.current: cached by the newest event id, so free to call)."""
    from core import decisions

    return decisions.current(workspace(), dataset_id)


@st.cache_resource(max_entries=4, show_spinner=False)
def decision_array(ws_path: str, dataset_id: int, version: int) -> Any:
    """The decision per row (dataset order; "" when undecided) at this decision version. Do not mutate."""
    from core import decisions

    import numpy as np

    state = decisions.current(_workspace(ws_path), dataset_id)
    action = dict.fromkeys(state.removed, "remove")
    action.update(dict.fromkeys(state.pinned, "keep"))
    action.update(dict.fromkeys(state.relabels, "relabel"))
    get = action.get  # (a dict lookup per row: faster than a pandas index or a uid -> position map over 38k uids)
    col = np.array([get(u, "") for u in dataset_columns(ws_path, dataset_id)["uid"]], dtype=object)
    col.setflags(write=False)
    return col


def decision_column(dataset_id: int, version: int) -> Any:
    return decision_array(str(workspace().path), dataset_id, version)


def _undo_last(dataset_id: int) -> None:
    from core import decisions

    undone = decisions.undo_last(workspace(), dataset_id)
    st.session_state["sidebar.undone"] = (len(undone), decisions.current(workspace(), dataset_id).version)


def undo_button(dataset_id: int, key: str = "sidebar.undo") -> None:
    """Undo the newest decision batch (a lasso Remove, an Inspect key, a rule) in one transaction; the undo is
    itself recorded in the decision log. A callback: the run that follows already shows the counts after it."""
    st.button("Undo the last decisions", key=key, icon=":material/undo:", on_click=_undo_last, args=(dataset_id,),
              help="takes back the newest batch of decisions (a lasso, a key press, a rule); "
                   "the undo is recorded in the decision log")
    done = st.session_state.get("sidebar.undone")
    if done is not None:  # said until the next decision (the panel may be drawn twice in one run: never popped)
        n, version = done
        if version != decision_state(dataset_id).version:
            del st.session_state["sidebar.undone"]
        else:
            st.text(f"undid {n:,} decision{'s' if n != 1 else ''}" if n else "nothing left to undo")


def toast_undo(message: str) -> None:
    """A toast after a decision, pointing at the sidebar's Undo."""
    st.toast(plain(f"To take it back: 'Undo the last decisions' in the sidebar ({message})"), icon=":material/undo:")


def active_values_run(dataset_id: int) -> Any:
    """The valuation run the map and Inspect use: the one the user picked, else the method the latest self-check
    ranks best (see `values_choice`), else the newest finished one."""
    return values_choice(dataset_id)[0]


def values_choice(dataset_id: int) -> tuple[Any, str]:
    """(the active valuation run or None, why it is the active one, in one line)."""
    from core.valuation.audit import recommend

    ws = workspace()
    chosen = ws.get_setting(f"active_values.{dataset_id}")
    if chosen is not None:
        try:
            run = ws.run(chosen)
            if run.status == "done":
                return run, "you chose this run"
        except WinnowError:
            pass
    done = ws.runs("values", dataset_id=dataset_id, status="done")
    audit = ws.latest_run("audit", dataset_id=dataset_id)
    rec = recommend((audit.result or {}).get("rows") or [], [r.method for r in done],
                    agreement_name=(audit.result or {}).get("agreement_column")) if audit else None
    if rec is not None:
        run = next(r for r in done if r.method.replace("_", "-") == rec[0])
        return run, rec[1]
    return (done[0], "the newest finished run; run the self-check to let the evidence choose") if done else \
        (None, "no valuation yet")


# ------------------------------------------------------------------ cached readers for the map, Inspect and Export
# Keyed by ids: a new run or embedding has a new id, so nothing needs invalidating. Big read-only arrays and frames
# are cache_resource (shared, never copied: callers must not mutate them); small derived frames are cache_data.


def active_embedding(dataset_id: int) -> Any:
    """The embedding the map and Inspect use: the active valuation run's, else the newest one, else None."""
    ws = workspace()
    run = active_values_run(dataset_id)
    if run is not None and run.embedding_id is not None:
        try:
            return ws.embedding_by_id(run.embedding_id)
        except WinnowError:
            pass
    embs = [e for e in ws.embeddings(dataset_id) if not e.meta.get("preliminary")]
    return embs[0] if embs else None


@st.cache_resource(max_entries=4, show_spinner=False)
def embedding_matrix(ws_path: str, embedding_id: int) -> Any:
    """(n, d) float32 embeddings of one embedding record, memory-mapped read-only (no copy in this process)."""
    import numpy as np

    ws = Workspace(ws_path)
    rec = ws.embedding_by_id(embedding_id)
    X = np.asarray(ws.read_array(rec.relpath, mmap=True), dtype=np.float32)
    X.setflags(write=False)
    return X


@st.cache_data(max_entries=32, show_spinner=False)
def run_frame(ws_path: str, run_id: int) -> Any:
    """A run's frame (artefacts/runs/<id>.parquet)."""
    return Workspace(ws_path).load_run_frame(run_id)


@st.cache_resource(max_entries=4, show_spinner=False)
def dataset_columns(ws_path: str, dataset_id: int) -> dict[str, list[str]]:
    """uid, text and label of a dataset as Python lists (read once per process; do not mutate)."""
    from core.data import column  # (not `ds[c]`: it iterates row by row, minutes at a million rows)

    ds = _load_dataset(ws_path, dataset_id).ds
    return {c: [str(v) for v in column(ds, c)] for c in ("uid", "text", "label")}


@st.cache_resource(max_entries=4, show_spinner=False)
def numeric_columns(ws_path: str, dataset_id: int) -> dict[str, Any]:
    """The dataset's extra columns that hold numbers (e.g. annotator agreement), as float arrays (NaN: missing)."""
    import numpy as np
    import pandas as pd

    ds = _load_dataset(ws_path, dataset_id).ds
    out = {}
    for c in ds.column_names:
        if c in ("uid", "text", "label"):
            continue
        v = pd.to_numeric(pd.Series(ds[c]), errors="coerce").to_numpy(dtype=float)
        if np.isfinite(v).sum() >= max(3, len(v) // 2):
            out[c] = v
    return out


def latest_projection(dataset_id: int, embedding_id: int) -> Any:
    """The newest finished projection run of this embedding (any parameters), or None."""
    for run in workspace().runs("projection", dataset_id=dataset_id, status="done"):
        if run.embedding_id == embedding_id:
            return run
    return None


def predictions(dataset_id: int, embedding_id: int, *, compute_below: int = 5_000) -> Any:
    """The source classifier's predictions (frame uid, pred, confidence, p_given) or None when not computed yet.

    Small data is computed here (a second or two); larger data waits for the `project` job, which computes them.
    """
    from core import curation

    ws = workspace()
    rec = ws.dataset(dataset_id)
    cols = dataset_columns(str(ws.path), dataset_id)
    got = _predictions(str(ws.path), embedding_id, rec.n_rows)
    if got is None and rec.n_rows <= compute_below and ws.embedding_by_id(embedding_id).n_rows == rec.n_rows:
        X = embedding_matrix(str(ws.path), embedding_id)
        with st.spinner("Cross-fitting the source classifier…"):
            curation.ensure_predictions(ws, embedding_id, X, cols["uid"], cols["label"], rec.classes)
        _predictions.clear()
        got = _predictions(str(ws.path), embedding_id, rec.n_rows)
    return got


@st.cache_resource(max_entries=8, show_spinner=False)
def _predictions(ws_path: str, embedding_id: int, n_rows: int) -> Any:
    from core import curation

    ws = Workspace(ws_path)
    emb = ws.embedding_by_id(embedding_id)
    uids = dataset_columns(ws_path, emb.dataset_id)["uid"]
    return curation.load_predictions(ws, embedding_id, uids)


def embedding_args(embedding: Any) -> list[str]:
    """CLI options that make a step use this embedding record's model (none for the default model)."""
    meta = getattr(embedding, "meta", None) or {}
    args: list[str] = []
    if meta.get("model"):
        args += ["--model", str(meta["model"])]
    if meta.get("precision") and meta["precision"] != "float32":
        args += ["--precision", str(meta["precision"])]
    return args


def ensure_map_job(dataset_id: int, embedding: Any = None) -> Any:
    """Start the `project` job (embed + map + predictions) unless one ran in this session; returns the job or None.

    Started at most once per session and embedding, so a failing job is shown instead of restarted in a loop.
    """
    flag = f"map.autostarted.{dataset_id}.{getattr(embedding, 'id', None)}"
    job = current_job("project", dataset_id)
    if job is not None and job.active:
        return job
    first = current_job("value", dataset_id)  # the first valuation draws the map too
    if first is not None and first.active and first.argv[:1] == ["first-run"]:
        return first
    if st.session_state.get(flag):
        return job
    st.session_state[flag] = True
    start_job("project", dataset_id, ["project", f"ws:{dataset_id}", *embedding_args(embedding)])
    return current_job("project", dataset_id)


@st.cache_data(max_entries=8, show_spinner="Summarising…")
def dataset_summary(ws_path: str, dataset_id: int) -> dict[str, Any]:
    """core.data.summarize of a dataset (class counts, lengths, duplicates, conflicts)."""
    from core import data

    return data.summarize(_load_dataset(ws_path, dataset_id).ds)


@st.cache_data(max_entries=8, show_spinner=False)
def text_lengths(ws_path: str, dataset_id: int) -> Any:
    """(n,) text lengths in characters."""
    import numpy as np

    return np.fromiter((len(t) for t in dataset_columns(ws_path, dataset_id)["text"]), dtype=np.int64)


@st.cache_data(max_entries=8, show_spinner=False)
def duplicate_tables(ws_path: str, dataset_id: int) -> tuple[Any, Any]:
    """(duplicates, conflicts) tables of core.data, with list cells joined for display."""
    from core import data

    dups = data.duplicate_table(_load_dataset(ws_path, dataset_id).ds)
    for c in ("rows", "uids"):
        if c in dups:
            dups[c] = dups[c].map(lambda v: ", ".join(map(str, v[:20])) + (" …" if len(v) > 20 else ""))
    return dups, dups[dups["conflict"].astype(bool)].reset_index(drop=True) if len(dups) else dups


def _hover_lines(text: str, width: int = 70, limit: int = 280) -> str:
    import html
    import textwrap

    short = text if len(text) <= limit else text[:limit] + "…"
    lines = textwrap.wrap(short, width, break_long_words=True, replace_whitespace=True) or [""]
    return "<br>".join(html.escape(ln, quote=False) for ln in lines[:5])


HOVER_TEXT_MAX = 5_000  # the map's hover carries the text up to this many rows (see pages/3_Map.py)


@st.cache_resource(max_entries=4, show_spinner="Preparing the map…")
def map_inputs(ws_path: str, dataset_id: int, embedding_id: int, projection_id: int, values_id: int | None,
               clusters_id: int | None, with_predictions: bool) -> dict[str, Any]:
    """Per-row arrays for the map, aligned with the dataset's row order (row position = index).

    Returns:
        x, y (float32); label (object); value, stderr (float64, NaN when missing; None without a values run);
        cluster (int64, -1 when missing; None without clusters); pred, confidence (None without predictions);
        hover (list of pre-escaped hover strings: plotly renders a subset of HTML, so dataset text is escaped;
        None above HOVER_TEXT_MAX rows, where the map's hover carries no text).
        Shared by every session (cache_resource, read-only arrays): never mutate.
    """
    import html

    import numpy as np

    from core import curation
    from core.projection import load_projection

    ws = Workspace(ws_path)
    cols = dataset_columns(ws_path, dataset_id)
    uids, labels = cols["uid"], cols["label"]
    coords = load_projection(ws, projection_id, uids)
    out: dict[str, Any] = {"x": coords[:, 0], "y": coords[:, 1], "label": np.asarray(labels, dtype=object),
                           "value": None, "stderr": None, "cluster": None, "pred": None, "confidence": None}
    if values_id is not None:
        vf = curation.align_values(run_frame(ws_path, values_id), uids)
        out["value"] = vf["value"].to_numpy(np.float64)
        out["stderr"] = vf["stderr"].to_numpy(np.float64) if "stderr" in vf else np.full(len(uids), np.nan)
    if clusters_id is not None:
        out["cluster"] = curation.align_column(run_frame(ws_path, clusters_id), "cluster", uids, fill=-1.0
                                               ).astype(np.int64)
    if with_predictions:
        pf = _predictions(ws_path, embedding_id, len(uids))
        if pf is not None:
            out["pred"] = pf["pred"].to_numpy(object)
            out["confidence"] = pf["confidence"].to_numpy(np.float64)
    for v in out.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    # The hover strings are most of the figure's bytes (serialised on every rerun), and every selected point sends
    # its own back to the server: big maps carry none (the selection table shows the texts).
    if len(uids) > HOVER_TEXT_MAX:
        out["hover"] = None
        return out
    big = False
    width, limit = 70, 280
    hover = []
    for i, (text, label) in enumerate(zip(cols["text"], labels)):
        head = f"<b>{html.escape(label)}</b>"
        if out["pred"] is not None:
            p = html.escape(str(out["pred"][i]))
            head += f" -> {p} {out['confidence'][i]:.0%}" if big else \
                f" · predicted {p} ({out['confidence'][i]:.0%})"
        if out["value"] is not None and not np.isnan(out["value"][i]):
            head += f" · {out['value'][i]:+.2g}" if big else f" · value {out['value'][i]:+.3g}"
        if out["cluster"] is not None:
            head += f" · c{out['cluster'][i]}" if big else f" · cluster {out['cluster'][i]}"
        hover.append(head + "<br>" + _hover_lines(text, width, limit))
    out["hover"] = hover
    return out


def run_number(run_id: Any) -> int | None:
    """The number a person sees for a run id (counted within its dataset and kind), None when there is no such run."""
    if run_id is None:
        return None
    try:
        return workspace().run(int(run_id)).number
    except (WinnowError, TypeError, ValueError):
        return None


def agreement_runs(dataset_id: int, active_run: Any) -> dict[str, int]:
    """Runs whose ranks say which methods call a row harmful: a consensus run (the active one, else the newest),
    else the newest finished run of each method."""
    ws = workspace()
    if active_run is not None and active_run.method == "consensus":
        return {"consensus": active_run.id}
    cons = ws.latest_run("values", dataset_id=dataset_id, method="consensus")
    if cons is not None:
        return {"consensus": cons.id}
    out: dict[str, int] = {}
    for run in ws.runs("values", dataset_id=dataset_id, status="done"):
        if run.method not in out and run.method != "random":
            out[run.method] = run.id
    return out


@st.cache_resource(max_entries=8, show_spinner=False)
def agreement_frame(ws_path: str, dataset_id: int, runs: tuple[tuple[str, int], ...]) -> Any:
    """core.curation.method_ranks of the given (method, run id) pairs, aligned with the dataset."""
    from core import curation

    uids = dataset_columns(ws_path, dataset_id)["uid"]
    return curation.method_ranks({m: run_frame(ws_path, r) for m, r in runs}, uids)


@st.cache_data(max_entries=8, show_spinner=False)
def cluster_names(ws_path: str, clusters_run_id: int | None) -> dict[int, str]:
    """Cluster id -> short name (its top words) of a clusters run, when its summaries are recorded; else {}."""
    if clusters_run_id is None:
        return {}
    try:
        summaries = _workspace(ws_path).run(clusters_run_id).result.get("summaries") or []
    except WinnowError:
        return {}
    return {int(s["cluster"]): str(s["name"]) for s in summaries if "cluster" in s and s.get("name")}


@st.cache_resource(max_entries=8, show_spinner=False)
def values_arrays(ws_path: str, dataset_id: int, run_id: int) -> dict[str, Any]:
    """A values run aligned with the dataset, for Inspect: value, stderr, counts (float64, NaN where missing),
    order (row positions from the lowest value up, NaN last), rank (each row's place in that order) and verdict
    (core.valuation.significance.classify: harmful only when the whole 95 % interval is below 0).
    Shared, read-only: never mutate."""
    import numpy as np

    from core import curation
    from core.valuation import significance

    uids = dataset_columns(ws_path, dataset_id)["uid"]
    vf = curation.align_values(run_frame(ws_path, run_id), uids)
    n = len(uids)
    out = {"value": vf["value"].to_numpy(np.float64),
           "stderr": vf["stderr"].to_numpy(np.float64) if "stderr" in vf else np.full(n, np.nan),
           "counts": vf[c].to_numpy(np.float64) if (c := "count" if "count" in vf else "counts") in vf
           else np.full(n, np.nan)}
    out["order"] = curation.harmful_order(out["value"])
    out["verdict"] = significance.classify(out["value"], out["stderr"], out["counts"])
    rank = np.empty(n, dtype=np.int64)
    rank[out["order"]] = np.arange(n)
    out["rank"] = rank
    out["n_valued"] = int((~np.isnan(out["value"])).sum())
    for v in out.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    return out


@st.cache_resource(max_entries=4, show_spinner=False)
def _neighbour_store(ws_path: str, embedding_id: int) -> dict[tuple[int, int], tuple[Any, Any]]:
    return {}  # (row, k) -> (neighbour rows, similarities); grows with the rows Inspect shows


NEIGHBOURS_AHEAD = 20  # rows computed ahead of the page (one pass over the embeddings costs the same for 10 or 30)


def neighbours(ws_path: str, embedding_id: int, rows: tuple[int, ...], ahead: Any = (), k: int = 5
               ) -> tuple[Any, Any]:
    """core.curation.nearest_neighbours of one page of cards, computed once per row, together with the next rows
    in `ahead` (so a key press that brings one new card onto the page finds its neighbours ready)."""
    import numpy as np

    from core import curation

    X = embedding_matrix(ws_path, embedding_id)
    emb = _workspace(ws_path).embedding_by_id(embedding_id)
    if len(X) != len(dataset_columns(ws_path, emb.dataset_id)["uid"]):
        return None, None  # a preliminary sample's embeddings: neighbours come with all rows
    store = _neighbour_store(ws_path, embedding_id)
    missing = [int(r) for r in rows if (int(r), k) not in store]
    if missing:
        more = [int(r) for r in ahead if (int(r), k) not in store][:NEIGHBOURS_AHEAD]
        want = list(dict.fromkeys(missing + more))
        idx, sim = curation.nearest_neighbours(X, want, k=k)
        for r, i, s in zip(want, idx, sim):
            i.setflags(write=False)
            s.setflags(write=False)
            store[(r, k)] = (i, s)
    if not rows:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    got = [store[(int(r), k)] for r in rows]
    return np.stack([g[0] for g in got]), np.stack([g[1] for g in got])


_MD_SPECIAL = "\\`*_{}[]()<>#+-.!|~$:="


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text)).replace("\n", "  \n")


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the quoted values in a message: core quotes dataset text with repr() ('...' or "..."), so a
    quote that opens after a space or bracket and closes before one marks data; an apostrophe inside a word
    (the header's) marks nothing."""
    spans, i, n = [], 0, len(text)
    while i < n:
        q = text[i]
        if q in "'\"" and (i == 0 or text[i - 1] in " \t\n([{:,=") and i + 1 < n:
            j = i + 1
            while j < n:
                if text[j] == "\\":
                    j += 2
                    continue
                if text[j] == q and (j + 1 == n or text[j + 1] in " \t\n)]},;:.!?"):
                    break
                j += 1
            if j < n:
                spans.append((i, j + 1))
                i = j + 1
                continue
        i += 1
    return spans


def _prose(text: str) -> str:
    """Winnow's own words: a pair of backticks on one line is code (`python -m core info`, `--split`), shown as a
    code span (which renders its content literally); anything else is escaped."""
    parts = text.split("`")
    out = [_escape(parts[0])]
    i = 1
    while i < len(parts):
        if i + 1 < len(parts) and parts[i].strip() and "\n" not in parts[i]:
            out.append("`" + parts[i] + "`" + _escape(parts[i + 1]))
            i += 2
        else:
            out.append(_escape("`" + parts[i]))
            i += 1
    return "".join(out)


def plain(text: str) -> str:
    """Backslash-escape Markdown syntax, for text that must go through a Markdown element (st.error, st.warning):
    an error message quoting a dataset row must not render a link, an image, LaTeX or an emoji code. Code that the
    message names in backticks (`python -m core info`, `--split`) is shown as code, not as literal backticks; the
    values it quotes from the data ('a `b` [x](y)', as repr() writes them) stay literal, backticks and all."""
    text = str(text)
    out, at = [], 0
    for a, b in _quoted_spans(text):
        out.append(_prose(text[at:a]))
        out.append(_escape(text[a:b]))
        at = b
    out.append(_prose(text[at:]))
    return "".join(out)


APP_DIR = os.path.dirname(os.path.abspath(__file__))


def _through_app() -> None:
    """Send a page that runs without app.py through app.py (keeping the page the user asked for).

    A fresh server whose first visitor opens a deep link (/Map) runs Streamlit's emulation of v1 multipage apps,
    because a `pages/` folder exists: the page runs alone, without app.py's navigation, sidebar and page config,
    until some session runs app.py. Every page calls `workspace()` first, so this check sits there.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if not PagesManager.uses_pages_directory or st.session_state.get("app.ran"):
        return  # (AppTest re-arms the emulation on every run; a session that went through app.py is fine)
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    info = ctx.pages_manager.get_pages().get(ctx.page_script_hash) or {}
    script = info.get("script_path")
    if script:
        rel = os.path.relpath(os.path.abspath(script), APP_DIR).replace(os.sep, "/")
        if rel != "app.py" and not rel.startswith(".."):
            st.session_state["app.deep_link"] = rel
    st.switch_page("app.py")


def follow_deep_link() -> None:
    """In app.py after st.navigation: open the page a deep link asked for (see `_through_app`)."""
    st.session_state["app.ran"] = True
    target = st.session_state.pop("app.deep_link", None)
    if target is not None:
        st.switch_page(target)


# ------------------------------------------------------------------ shared by Value, Select and Fine-tune
def is_preliminary(run: Any) -> bool:
    """True for a run of the first valuation's preliminary sample (core.first_run)."""
    from core import first_run

    return first_run.is_preliminary(run)


def first_run_note(dataset_id: int, run: Any) -> None:
    """Above results from the first valuation's sample: what they are and when the rest lands (kept current; the
    page is redrawn when the run over every row replaces them)."""
    if is_preliminary(run):
        _first_run_watch(dataset_id, run.id)


@st.fragment(run_every="2s")
def _first_run_watch(dataset_id: int, run_id: int) -> None:
    from core import first_run

    current = active_values_run(dataset_id)
    if current is None or current.id != run_id:
        st.rerun(scope="app")
    note = first_run.preliminary_note(workspace(), dataset_id, current)
    if note:
        st.info(plain(note), icon=":material/hourglass_top:")


def job_note(job: jobs.Job | None) -> None:
    """`job_panel` for the latest job of a kind (None: nothing), plus the tail of a failed job's log, verbatim."""
    if job is None:
        return
    job_panel(job)
    if job.status == "failed":
        with st.expander("Log of the failed job"):
            st.code(jobs.log_tail(job, 30) or "(empty)", language=None)
