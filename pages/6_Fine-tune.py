"""Fine-tune & compare: fine-tune several subsets over seeds, fairly, in the background; intervals and a verdict.

The experiment is the `compare` step (`python -m core compare ws:ID --subsets ... --seeds N --protocol P`), started as
a job: each finished (subset, seed) fine-tune is a checkpoint of its run, so closing the tab or restarting the server
loses nothing and a stopped job resumes at the next unfinished fine-tune. Before Start the page shows the estimated
duration from this machine's measured speed (measured once by a short job, then cached).
"""
from __future__ import annotations

import shlex
import time
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core import decisions, experiment
from core.errors import WinnowError

ws = ui.workspace()
ds_id = ui.active_dataset_id()
rec = ws.dataset(ds_id)

st.title("Fine-tune & compare")
st.caption("The proof that curation helped: fine-tune a model on each subset with several seeds and compare test "
           "accuracy with paired 95 % intervals. Every subset draws from the same training pool and, per seed, gets "
           "the same initialisation and held-out split. The defaults (a capped pool, 2 seeds, equal steps) are sized "
           "for about 10 minutes on 2 CPU cores; it runs in the background, so you may close this tab.")


def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _budget_text(mode: str, frac: float, count: int) -> str:
    return f"{frac:g}" if mode == "fraction" else str(int(count))


# ------------------------------------------------------------------------------------------------ subsets
dec = decisions.current(ws, ds_id).counts
selections = ws.runs("selection", dataset_id=ds_id, status="done")
values_run = ui.active_values_run(ds_id)
clusters_run = ws.latest_run("clusters", dataset_id=ds_id)
# the caps (set under Training) decide the training pool every budget is a share of
pool_max = int(st.session_state.get("finetune.pool_max", experiment.DEMO_POOL_MAX))
eval_max = int(st.session_state.get("finetune.eval_max", experiment.DEMO_EVAL_MAX))
pool_rows, _ = experiment._pool_size(rec.n_rows, has_eval_file=st.session_state.get("finetune.eval_mode")
                                     == "a labelled file", eval_fraction=float(st.session_state.get(
                                         "finetune.eval_fraction", 0.2)), eval_max=eval_max,
                                     pool_max=pool_max or None)

st.subheader("Subsets")
c1, c2 = st.columns(2)
with c1:
    use_full = st.checkbox(f"Full set ({rec.n_rows:,} rows)", value=True, key="finetune.full")
    use_curated = st.checkbox(f"Curated: full set minus {dec['remove']:,} removed rows", value=dec["remove"] > 0,
                              key="finetune.curated", disabled=dec["remove"] == 0,
                              help="remove rows on the Map or Inspect page first" if dec["remove"] == 0 else None)
    use_random = st.checkbox("Random at the budget", value=True, key="finetune.random",
                             help="a new uniform draw per seed: the floor a curated subset must beat")
    use_top = st.checkbox("Top value at the budget", value=False, key="finetune.top_value",
                          disabled=values_run is None,
                          help=("the highest-valued rows of the active valuation run" if values_run is not None
                                else "compute values on the Value page first"))
    use_kmq = st.checkbox("kMQ at the budget", value=False, key="finetune.kmq", disabled=clusters_run is None,
                          help=("diversity first: the budget spread over the newest clusters by size"
                                if clusters_run is not None else "cluster on the Select page first"))
    use_clean = st.checkbox("Clean, then diversify at the budget", value=False, key="finetune.clean_kmq",
                            disabled=values_run is None or clusters_run is None,
                            help=("drop the active run's significantly harmful rows, then kMQ's cluster shares"
                                  if values_run is not None and clusters_run is not None
                                  else "needs values (Value page) and clusters (Select page)"))
with c2:
    sel_names = {r.id: f"subset {r.number}: {r.method}, {r.result.get('n', '?')} rows" for r in selections}
    chosen_sel = st.multiselect("Saved subsets", list(sel_names), default=list(sel_names)[:1],
                                key="finetune.selections", format_func=lambda i: sel_names.get(i, str(i)),
                                help="subsets saved on the Select page")
    first = next((r for r in selections if r.id in chosen_sel), None)
    b1, b2 = st.columns(2)
    budgeted = use_random or use_top or use_kmq or use_clean
    mode = b1.radio("Budget as", ["count", "fraction"], horizontal=True, key="finetune.budget_mode",
                    disabled=not budgeted)
    default_count = int(first.result.get("n") or 0) if first is not None else max(1, pool_rows // 2)
    if mode == "count":
        count = int(b2.number_input("Rows", min_value=1, max_value=max(1, pool_rows), step=100,
                                    value=min(max(1, default_count), pool_rows), key="finetune.count",
                                    disabled=not budgeted,
                                    help=f"rows of the {pool_rows:,}-row training pool; defaults to the size of the "
                                         "first saved subset chosen"))
        frac = 0.5
    else:
        frac = float(b2.slider("Share of the training pool", 0.05, 1.0, 0.5, 0.05, key="finetune.fraction",
                               disabled=not budgeted))
        count = 0
budget = _budget_text(mode, frac, count)
specs: list[str] = []
if use_full:
    specs.append("full")
if use_curated and dec["remove"] > 0:
    specs.append("curated")
if use_random:
    specs.append(f"random:{budget}")
if use_top and values_run is not None:
    specs.append(f"top-value:{budget}:{values_run.id}")
if use_kmq and clusters_run is not None:
    specs.append(f"kmq:{budget}")
if use_clean and values_run is not None and clusters_run is not None:
    specs.append(f"clean-kmq:{budget}:{values_run.id}")
specs += [f"selection:{i}" for i in chosen_sel]

# ------------------------------------------------------------------------------------------------ training
st.subheader("Training")
PROTOCOL_NAMES = {"equal-steps": "equal steps", "equal-epochs": "equal epochs", "convergence": "to convergence"}
protocol = st.radio("Protocol", list(PROTOCOL_NAMES), format_func=PROTOCOL_NAMES.get, horizontal=True,
                    key="finetune.protocol",
                    help="equal steps: every subset trains as many optimizer steps as EPOCHS passes over the largest "
                         "(smaller subsets are not handicapped); equal epochs: EPOCHS passes over each subset's own "
                         "rows; to convergence: at most EPOCHS passes, early stopping on a 10 % validation split "
                         "carved the same way from each subset")
t1, t2, t3 = st.columns(3)
seeds = int(t1.number_input("Seeds", min_value=1, max_value=10, value=experiment.DEMO_SEEDS, key="finetune.seeds",
                            help="each subset is fine-tuned once per seed (0..N-1); seed s gives every subset the same "
                                 "initialisation and held-out split, so differences are paired"))
epochs = int(t2.number_input("Epochs" + (" (at most)" if protocol == "convergence" else ""), min_value=1,
                             max_value=20, value=experiment.DEMO_EPOCHS, key="finetune.epochs"))
model = t3.text_input("Model", value="", placeholder="packaged all-MiniLM-L6-v2", key="finetune.model",
                      help="a local model folder or a cached hub name; empty = the packaged MiniLM with a new head")
k1, k2 = st.columns(2)
k1.number_input("Training pool cap (rows; 0 = none)", min_value=0, step=500, value=experiment.DEMO_POOL_MAX,
                key="finetune.pool_max",
                help="a stratified draw per seed from the rows that are not test rows; every subset and budget "
                     "comes from this pool. The default keeps a comparison to about 10 minutes on 2 cores")
k2.number_input("Held-out test rows (at most)", min_value=50, step=250, value=experiment.DEMO_EVAL_MAX,
                key="finetune.eval_max", help="the held-out split is a stratified share of the data, capped here")
e1, e2 = st.columns([1, 2])
eval_mode = e1.radio("Test set", ["held-out split", "a labelled file"], key="finetune.eval_mode",
                     help="held-out: a stratified share of this dataset, drawn per seed, the same for every "
                          "subset of that seed and left out of every subset")
eval_path = e2.text_input("Test file path", value="", key="finetune.eval_path",
                          disabled=eval_mode == "held-out split",
                          placeholder="/path/to/test.csv (same label names)")
with st.expander("More training options"):
    a1, a2, a3, a4 = st.columns(4)
    batch_size = int(a1.number_input("Batch size", min_value=1, max_value=512, value=32, key="finetune.batch_size"))
    lr = float(a2.number_input("Learning rate", min_value=1e-7, max_value=1e-2, value=5e-5, format="%.0e",
                               key="finetune.lr"))
    max_length = int(a3.number_input("Max tokens", min_value=8, max_value=512, value=128, key="finetune.max_length"))
    eval_fraction = float(a4.number_input("Held-out share", min_value=0.05, max_value=0.5, value=0.2, step=0.05,
                                          key="finetune.eval_fraction", disabled=eval_mode != "held-out split"))

argv = ["compare", f"ws:{ds_id}", "--subsets", ",".join(specs), "--seeds", str(seeds), "--epochs", str(epochs),
        "--protocol", protocol]
if pool_max:
    argv += ["--pool-max", str(pool_max)]
if eval_mode != "a labelled file":
    argv += ["--eval-max", str(eval_max)]
if model.strip():
    argv += ["--model", model.strip()]
if eval_mode == "a labelled file":
    argv += ["--eval", eval_path.strip()]
else:
    argv += ["--eval-fraction", f"{eval_fraction:g}"]
if batch_size != 32:
    argv += ["--batch-size", str(batch_size)]
if lr != 5e-5:
    argv += ["--lr", f"{lr:g}"]
if max_length != 128:
    argv += ["--max-length", str(max_length)]

job = ui.current_job("compare", ds_id)
calib = ui.current_job("calibrate", ds_id)
n_runs = len(specs) * seeds
st.caption(f"{len(specs)} subset(s) × {seeds} seed(s) = {n_runs} fine-tune(s) · training pool {pool_rows:,} rows")
est: dict[str, Any] | None = None
if specs and not (eval_mode == "a labelled file" and not eval_path.strip()):
    try:
        est = experiment.estimate_compare(
            ws, ds_id, specs, n_rows=rec.n_rows, seeds=seeds, epochs=epochs, protocol=protocol,
            pool_max=pool_max or None, eval_path=eval_path.strip() if eval_mode == "a labelled file" else None,
            eval_fraction=eval_fraction, eval_max=eval_max, model=model.strip() or None, batch_size=batch_size,
            max_length=max_length, measure=False)
    except WinnowError as e:
        st.warning(ui.plain(str(e)), icon=":material/warning:")
if est is not None:
    if est["total"] is not None:
        st.info(ui.plain(est["line"]), icon=":material/schedule:")
    else:
        st.caption(ui.plain(est["line"]) + f" (a short fine-tune of {experiment.CALIBRATION_STEPS} steps, run once and cached).")
        if st.button("Measure this machine's speed", key="finetune.calibrate", icon=":material/speed:",
                     disabled=(calib is not None and calib.active) or (job is not None and job.active)):
            with ui.guard():
                ui.start_job("calibrate", ds_id, argv + ["--estimate"])
                st.rerun()
        ui.job_note(calib)
st.code("python -m core " + shlex.join(argv), language=None, wrap_lines=True)
if st.button("Start the comparison", key="finetune.start", type="primary", icon=":material/play_arrow:",
             disabled=(job is not None and job.active)):
    with ui.guard():
        if not specs:
            raise WinnowError("choose at least one subset")
        experiment.parse_subsets(specs)  # fail fast on a malformed spec
        if eval_mode == "a labelled file" and not eval_path.strip():
            raise WinnowError("give the path of a labelled test file, or use the held-out split")
        ui.start_job("compare", ds_id, argv)
        st.rerun()
ui.job_note(job)

# ------------------------------------------------------------------------------------------------ results
st.subheader("Results")
runs = ws.runs("compare", dataset_id=ds_id)
if not runs:
    st.caption("No comparison yet.")
    st.stop()
default = 0
if job is not None and job.run_id is not None:
    default = next((i for i, r in enumerate(runs) if r.id == job.run_id), 0)
signature = [*(r.id for r in runs), None if job is None else job.run_id]
if st.session_state.get("finetune.runs_seen") != signature:  # a new comparison: show it
    st.session_state.pop("finetune.run", None)
    st.session_state["finetune.runs_seen"] = signature
by_id = {r.id: r for r in runs}


def _run_name(i: int) -> str:
    r = by_id[i]
    return (f"comparison {r.number}: {r.status}, {len(r.params.get('subsets', []))} subsets × "
            f"{len(r.params.get('seeds', []))} seeds, {_when(r.created)}")


pick = st.selectbox("Comparison", list(by_id), index=default, key="finetune.run", format_func=_run_name)
run = by_id[pick]
def _chart(rows: list[dict[str, Any]]) -> go.Figure:
    """Differences in accuracy from the full set with their paired 95 % intervals (zero line) when there is a full
    set and 2+ seeds; else mean accuracy and macro-F1 with their intervals on an axis that starts at 0."""
    fig = go.Figure()
    diffs = [r for r in rows if r.get("vs_full") and r["vs_full"].get("half") is not None]
    if diffs:
        fig.add_trace(go.Scatter(
            x=[r["subset"] for r in diffs], y=[100 * r["vs_full"]["mean"] for r in diffs], mode="markers",
            marker=dict(size=11, color=["#2ca02c" if r["vs_full"]["low"] > 0 else "#d62728"
                                        if r["vs_full"]["high"] < 0 else "#7f7f7f" for r in diffs]),
            error_y=dict(type="data", array=[100 * r["vs_full"]["half"] for r in diffs], visible=True),
            hovertemplate="%{x}: %{y:+.2f} points<extra>vs full</extra>", name="vs full"))
        fig.add_hline(y=0, line_color="#333333", line_dash="dash", annotation_text="full set")
        fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10), xaxis_type="category",
                          yaxis_title="accuracy minus full (points, paired 95 % interval)", showlegend=False)
        return fig
    for metric, name, colour in (("accuracy", "accuracy", "#4c78a8"), ("macro_f1", "macro-F1", "#f58518")):
        err = [r.get(f"{metric}_ci") or 0.0 for r in rows]
        fig.add_trace(go.Bar(x=[r["subset"] for r in rows], y=[r[f"{metric}_mean"] for r in rows], name=name,
                             marker_color=colour, error_y=dict(type="data", array=err, visible=any(err)),
                             hovertemplate="%{x}: %{y:.4f}<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", height=380, margin=dict(l=10, r=10, t=30, b=10),
                      yaxis=dict(title="test score (mean, 95 % interval over seeds)", range=[0.0, 1.0]),
                      xaxis_type="category", legend=dict(orientation="h", y=1.1))
    return fig


saved_names = {f"selection:{r.id}": f"subset {r.number} ({r.method})" for r in ws.runs("selection", dataset_id=ds_id)}


def _label(spec: str) -> str:
    if spec in saved_names:
        return saved_names[spec]
    kind, _, rest = spec.partition(":")
    if kind == "random":
        return f"random {rest}"
    if kind == "top-value":
        b, _, vid = rest.partition(":")
        return f"top value {b} (valuation run {ui.run_number(vid) or vid})"
    if kind == "clean-kmq":
        b, _, vid = rest.partition(":")
        return f"clean, then kMQ {b}" + (f" (valuation run {ui.run_number(vid) or vid})" if vid else "")
    return spec


def _results(run_id: int) -> None:
    """The chosen comparison: chart, table, every fine-tune; refreshed while it runs."""
    run = ws.run(run_id)
    table = run.result.get("table") or []
    ckpts = ws.checkpoints(run.id)
    total = len(run.params.get("subsets", [])) * len(run.params.get("seeds", []))
    st.caption(f"{len(ckpts)} of {total} fine-tunes finished · status {run.status}"
               + (f" · {run.result['n_test']:,} test rows" if run.result.get("n_test") else "")
               + (f" · {run.seconds / 60:.1f} min" if run.seconds else ""))
    if run.result.get("error"):
        st.error(ui.plain(str(run.result["error"])), icon=":material/error:")
    est_s = run.result.get("estimate_seconds")
    if est_s and run.status == "done" and run.seconds:
        st.caption(f"Estimated {experiment.format_duration(est_s)} before it started; it took "
                   f"{experiment.format_duration(run.seconds)} · on {run.result.get('device') or 'cpu'} · "
                   f"protocol {run.params.get('protocol', 'equal-epochs')}")
    if table:
        st.info(ui.plain(run.result.get("verdict") or experiment.verdict_line(table)), icon=":material/gavel:")
        for w in run.result.get("warnings") or experiment.compare_warnings(table, ckpts):
            st.warning(ui.plain(w), icon=":material/warning:")
        st.plotly_chart(_chart([dict(r, subset=_label(r["subset"])) for r in table]), key="finetune.chart")
        text = {r["subset"]: c for r, c in zip(table, experiment.table_rows(table))}
        st.dataframe(pd.DataFrame([{
            "subset": _label(r["subset"]), "rows": str(r["rows"]), "steps": r.get("steps", 0),
            "seeds done": r["runs"], "accuracy": r["accuracy_mean"], "± acc": r["accuracy_std"],
            "95 % CI": "n/a (one seed)" if r.get("accuracy_ci") is None else f"± {r['accuracy_ci']:.4f}",
            "vs full (points)": text[r["subset"]]["vs full (points)"],
            "vs random (points)": text[r["subset"]]["vs random (points)"],
            "macro-F1": r["macro_f1_mean"], "± F1": r["macro_f1_std"],
            "seconds per fine-tune": r["train_seconds"],
        } for r in table]), hide_index=True, column_config={
            "accuracy": st.column_config.NumberColumn(format="%.4f"),
            "± acc": st.column_config.NumberColumn("sd acc", format="%.4f",
                                                   help="standard deviation over seeds"),
            "macro-F1": st.column_config.NumberColumn(format="%.4f"),
            "± F1": st.column_config.NumberColumn("sd F1", format="%.4f"),
            "seconds per fine-tune": st.column_config.NumberColumn(format="%.0f")})
    if table and run.params.get("eval", {}).get("held_out") is not None:
        st.caption("The held-out test rows are left out of every subset: the rows column shows what each subset "
                   "trained on.")
    if ckpts:
        with st.expander("Every fine-tune (subset × seed)"):
            st.dataframe(pd.DataFrame([{k: v for k, v in m.items() if not isinstance(v, (dict, list))}
                                       for m in ckpts.values()]), hide_index=True)
    elif not table:
        st.caption("No fine-tune has finished yet; results appear here as each one ends.")
    with st.expander("Parameters of this comparison"):
        st.json(run.params, expanded=False)


st.fragment(run_every="10s" if run.status == "running" else None)(_results)(run.id)

# ------------------------------------------------------------------------------------------------ history
st.subheader("History")
st.dataframe(pd.DataFrame([{
    "comparison": r.number, "status": r.status, "subsets": ", ".join(map(_label, r.params.get("subsets", []))),
    "seeds": len(r.params.get("seeds", [])), "epochs": r.params.get("epochs"),
    "protocol": r.params.get("protocol", "equal-epochs"),
    "model": r.params.get("model") or "MiniLM (packaged)",
    "test set": "file" if "file" in (r.params.get("eval") or {}) else "held out",
    "done": r.result.get("n_done", 0), "started": _when(r.created),
    "minutes": "" if r.seconds is None else f"{r.seconds / 60:.1f}",
    "estimated": experiment.format_duration(r.result["estimate_seconds"]) if r.result.get("estimate_seconds") else "",
} for r in runs]), hide_index=True)
