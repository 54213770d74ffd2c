"""Value: compute data values (TS-DShapley by default) as a background job, read their distribution, compare runs,
pick the run the map and Inspect use, and run the self-check (which method finds injected label flips here).

Every computation is the `value` or `audit` step (`python -m core value ws:ID --method ...`) started as a job: the
job embeds the texts first if needed, then values them, recording progress in the workspace, so a reload or a
closed tab loses nothing.
"""
from __future__ import annotations

import shlex
import time
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core.errors import WinnowError
from core.valuation import DEFAULT_METHOD, REGISTRY, significance
from core.valuation.audit import DEFAULT_METHODS as AUDIT_DEFAULT
from core.valuation.audit import agreement_check, recommend
from core.valuation.base import Values
from core.valuation.consensus import DEFAULT_MEMBERS as CONSENSUS_DEFAULT
from core.valuation.removal import curve_caption

ws = ui.workspace()
ws_path = str(ws.path)
ds_id = ui.active_dataset_id()
rec = ws.dataset(ds_id)

def _cli(name: str) -> str:
    return name.replace("_", "-")


def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _run_name(r: Any) -> str:
    prelim = f" · preliminary ({r.params['sample']:,}-row sample)" if ui.is_preliminary(r) else ""
    return f"run {r.number}: {r.method}{prelim} · {_when(r.created)}"


def _values(run_id: int) -> pd.DataFrame:
    return ui.run_frame(ws_path, run_id)


def _opt(run: Any, name: str) -> Any:
    """An option a valuation run used: the method's own record of it, else what was asked."""
    used = (run.result or {}).get("method_params") or {}
    return used.get(name, (run.params.get("options") or {}).get(name, run.params.get(name)))


def _removal(run: Any) -> dict[str, Any] | None:
    """The suggested removal recorded with a run: the row count over the whole dataset (`total`) and the
    validation curve (fractions removed, lowest first vs highest first vs random)."""
    res = run.result or {}
    rem = res.get("removal")
    if not isinstance(rem, dict):
        return None
    total = res.get("suggested_removal", rem.get("n_remove_total", rem.get("n_remove")))
    return {**rem, "total": total}


st.title("Value")
st.caption("How much each row helps a classifier trained on the others: below 0 = harmful (often mislabelled), "
           "near 0 = redundant. The map colours rows by the active run; Inspect lists the lowest first.")

# ------------------------------------------------------------------------------------------------ compute
methods = [s.name for s in REGISTRY.values()]
default_method = _cli(DEFAULT_METHOD)
m1, m2 = st.columns([1, 2])
method = m1.selectbox("Method", methods, index=methods.index(default_method), key="value.method")
spec = REGISTRY[method.replace("-", "_")]
m2.caption("About this method")
m2.text(spec.about)

opts: list[str] = []
with st.expander("Parameters", expanded=False):
    p1, p2, p3 = st.columns(3)
    shown_options = [o for o in spec.options if o.label]
    for i, o in enumerate(shown_options):
        col = (p1, p2, p3)[i % 3]
        key = f"value.{spec.key}.{o.name}"
        if o.choices:
            val: Any = col.selectbox(o.label, list(o.choices), index=list(o.choices).index(o.default), key=key,
                                     help=o.help)
        elif o.type is bool:
            val = col.checkbox(o.label, value=bool(o.default), key=key, help=o.help)
        else:
            val = col.number_input(o.label, min_value=None if o.low is None else o.type(o.low),
                                   max_value=None if o.high is None else o.type(o.high), value=o.default, key=key,
                                   help=o.help)
        if o.type is bool:
            opts += [o.flag] if val else []
        else:
            opts += [o.flag, str(val)]
    if spec.key == "consensus":
        members = p1.multiselect("Members", [m for m in methods if m not in ("consensus", "random")],
                                 default=[_cli(m) for m in CONSENSUS_DEFAULT], key="value.members")
        opts += ["--members", ",".join(members)]
        people_cols = list(ui.numeric_columns(ws_path, ds_id))
        if people_cols:
            agree = p2.selectbox("Human agreement column", ["(none)", *people_cols], key="value.cons_agreement",
                                 index=1 + people_cols.index("confidence") if "confidence" in people_cols else 0,
                                 help="a column of human agreement with each label (e.g. the share of annotators "
                                      "who chose it): the self-check weights then also track it (cross-fitted)")
            if agree != "(none)":
                opts += ["--agreement", agree]
    seed = p3.number_input("Seed", 0, 2**31 - 1, 0, key="value.seed")
    opts += ["--seed", str(seed)]
    valid_path = st.text_input("Validation file (optional)", key="value.valid", placeholder="default: a stratified "
                               "10 % held out from the data (at most 2,000 rows), then valued by swapping roles")
    if valid_path.strip():
        opts += ["--valid", valid_path.strip()]
    suggest = st.checkbox("Suggest how many of the lowest-valued rows to remove (with its validation curve)",
                          value=method == "ts-dshapley", key="value.suggest")
    if suggest:
        opts += ["--suggest-removal"]

argv = ["value", f"ws:{ds_id}", "--method", method, *opts]
job = ui.current_job("value", ds_id)
st.code("python -m core " + shlex.join(argv), language=None, wrap_lines=True)
runs = ws.runs("values", dataset_id=ds_id)
done = [r for r in runs if r.status == "done"]
if st.button("Compute values", key="value.start", type="primary", icon=":material/play_arrow:",
             disabled=job is not None and job.active):
    with ui.guard():
        # the first valuation also maps and clusters the data, from a preliminary sample first when it is large
        first = not any(not ui.is_preliminary(r) for r in done)
        st.session_state["value.job"] = ui.start_job("value", ds_id, ["first-run", *argv[1:]] if first else argv)
        st.rerun()
ui.job_note(job)
if job is not None and job.status == "done" and job.run_id is not None:
    st.caption(f"The last job recorded valuation run {ws.run(job.run_id).number}.")

# ------------------------------------------------------------------------------------------------ results
runs = ws.runs("values", dataset_id=ds_id)
done = [r for r in runs if r.status == "done"]
active, active_why = ui.values_choice(ds_id)
ui.first_run_note(ds_id, active)
if not done:
    if job is None or not job.active:
        st.info("No valuation yet: press Compute values (the first run also embeds the texts).",
                icon=":material/info:")
else:
    st.subheader("Distribution")
    ids = [r.id for r in done]
    default = ids.index(active.id) if active is not None and active.id in ids else 0
    if job is not None and job.status == "done" and job.run_id in ids:  # what the last job computed
        default = ids.index(job.run_id)
    signature = [*ids, None if active is None else active.id, None if job is None else job.id]
    if st.session_state.get("value.runs_seen") != signature:  # a new run or a new active run: show it
        for key in ("value.shown", "value.cmp_a", "value.cmp_b"):
            st.session_state.pop(key, None)
        st.session_state["value.runs_seen"] = signature
    shown_id = st.selectbox("Run", ids, index=default, key="value.shown",
                            format_func=lambda i: _run_name(next(r for r in done if r.id == i))
                            + ("  (active)" if active is not None and i == active.id else ""))
    shown = next(r for r in done if r.id == shown_id)
    df = _values(shown.id)
    v = df["value"].to_numpy(dtype=float)
    se = df["stderr"].to_numpy(dtype=float) if "stderr" in df else np.full(len(v), np.nan)
    sure = significance.summarize(Values.from_frame(df, method=shown.method, source=f"run {shown.number}"))
    a1, a2, a5, a3, a4 = st.columns(5)
    a1.metric("Rows valued", f"{int(np.isfinite(v).sum()):,}")
    a2.metric("Significantly harmful", "n/a" if sure.with_stderr == 0 else f"{100 * sure.share('harmful'):.1f} %",
              help=significance.LEGEND["harmful"])
    a5.metric("Below 0", f"{100 * float(np.mean(v < 0)):.1f} %",
              help="values below 0, significant or not: most may be indistinguishable from 0")
    a3.metric("Median std. error", "n/a" if np.all(np.isnan(se)) else f"{np.nanmedian(se):.2g}")
    a4.metric("Valuation seconds", "n/a" if shown.seconds is None else f"{shown.seconds:,.1f}",
              help="time spent valuing; embedding the texts is not included")
    fig = go.Figure(go.Histogram(x=v, nbinsx=80, marker_color="#4c78a8",
                                 hovertemplate="%{x}: %{y} rows<extra></extra>"))
    fig.add_vline(x=0, line_color="#d62728", line_dash="dash", annotation_text="0", annotation_position="top")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=f"value ({shown.method})",
                      yaxis_title="rows", bargap=0.02)
    st.plotly_chart(fig, key="value.hist")
    st.caption(sure.headline() + ". Harmful, uncertain and helpful use each value's 95 % interval from its standard "
               "error and estimate count; the suggested removal below is the validation curve's choice.")

    if shown.id != (active.id if active is not None else None):
        if st.button(f"Make run {shown.number} the active run", key="value.activate", icon=":material/check:"):
            ws.set_setting(f"active_values.{ds_id}", shown.id)
            st.rerun()
    else:
        st.caption("This is the active run: the map and Inspect use it.")
    if active is not None:
        st.info(f"The map colours by run {active.number} ({_cli(active.method)}). Why: {active_why}",
                icon=":material/palette:")
        ts_runs = [r for r in done if r.method == DEFAULT_METHOD]
        if active.method != DEFAULT_METHOD and ts_runs:
            if st.button(f"Colour by {_cli(DEFAULT_METHOD)} instead (run {ts_runs[0].number})", key="value.use_default",
                         icon=":material/undo:"):
                ws.set_setting(f"active_values.{ds_id}", ts_runs[0].id)
                st.rerun()

    rem = _removal(shown)
    if rem is not None:
        st.subheader("Suggested removal")
        total, frac = rem.get("total"), rem.get("fraction")
        if total is not None:
            st.metric("Rows to remove (lowest value first)", f"{int(total):,}",
                      help=f"{100 * (frac or 0):.1f} % of the rows; proxy accuracy {rem.get('baseline', 0):.4f} → "
                           f"{rem.get('score', 0):.4f} ({rem.get('scoring', 'source classifier')})")
        for w in rem.get("warnings") or []:
            st.warning(ui.plain(str(w)), icon=":material/warning:")
        curve = pd.DataFrame(rem.get("curve") or [])
        if not curve.empty and "fraction" in curve:
            fig = go.Figure()
            x = 100 * curve["fraction"]
            for col, name, colour in (("score", "lowest first", "#2ca02c"), ("score_highest", "highest first",
                                                                               "#d62728"),
                                      ("score_random", "random", "#7f7f7f")):
                if col in curve:
                    fig.add_trace(go.Scatter(x=x, y=curve[col], mode="lines+markers", name=name,
                                             line_color=colour))
            if frac is not None:
                fig.add_vline(x=100 * frac, line_dash="dot", annotation_text="suggested")
            fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="% of rows removed",
                              yaxis_title="validation accuracy of the source classifier",
                              legend=dict(orientation="h", y=1.12))
            st.plotly_chart(fig, key="value.removal")
        st.caption(curve_caption(rem.get("curve") or [], frac) + " Apply it on the Select page (drop negative, "
                   "or clean-then-diversify).")

    st.subheader("Past runs")
    past = pd.DataFrame([{
        "run": r.number, "method": r.method, "status": r.status, "active": bool(active is not None and r.id == active.id),
        "valuation seconds": r.seconds, "passes": _opt(r, "n_passes"), "subset size": _opt(r, "subset_size"),
        "permutations": _opt(r, "n_permutations"), "k": _opt(r, "k"), "seed": r.params.get("seed"),
        "validation": _opt(r, "validation"),
        "suggested removal": (_removal(r) or {}).get("total"), "started": _when(r.created),
    } for r in runs])
    optional = ["passes", "subset size", "permutations", "k", "validation", "suggested removal"]
    past = past.drop(columns=[c for c in optional if past[c].isna().all()])
    st.dataframe(past, hide_index=True, column_config={"valuation seconds": st.column_config.NumberColumn(format="%.1f")})

    if len(done) >= 2:
        st.subheader("Compare two runs")
        c1, c2 = st.columns(2)
        a_id = c1.selectbox("Run A", ids, index=0, key="value.cmp_a",
                            format_func=lambda i: _run_name(next(r for r in done if r.id == i)))
        b_id = c2.selectbox("Run B", ids, index=1, key="value.cmp_b",
                            format_func=lambda i: _run_name(next(r for r in done if r.id == i)))
        a = _values(a_id)[["uid", "value"]]
        b = _values(b_id)[["uid", "value"]]
        both = a.merge(b, on="uid", suffixes=("_a", "_b"))
        if both.empty:
            st.warning("These runs share no rows.", icon=":material/warning:")
        else:
            rho = both["value_a"].rank().corr(both["value_b"].rank())
            q = max(1, int(round(0.1 * len(both))))
            low_a = set(both.nsmallest(q, "value_a")["uid"])
            low_b = set(both.nsmallest(q, "value_b")["uid"])
            s1, s2 = st.columns(2)
            s1.metric("Spearman rank correlation", f"{rho:.3f}")
            s2.metric("Shared among the lowest 10 %", f"{100 * len(low_a & low_b) / q:.0f} %")
            fig = go.Figure(go.Scattergl(x=both["value_a"], y=both["value_b"], mode="markers",
                                         marker=dict(size=4, opacity=0.5, color="#4c78a8"),
                                         hovertemplate="A %{x:.4g}<br>B %{y:.4g}<extra></extra>"))
            fig.add_hline(y=0, line_color="#bbbbbb")
            fig.add_vline(x=0, line_color="#bbbbbb")
            fig.update_layout(height=380, margin=dict(l=10, r=10, t=20, b=10), xaxis_title=f"run {ws.run(a_id).number}",
                              yaxis_title=f"run {ws.run(b_id).number}")
            st.plotly_chart(fig, key="value.scatter")

# ------------------------------------------------------------------------------------------------ self-check
st.subheader("Self-check: which method finds bad labels in this data?")
st.caption("Flips a seeded share of labels in a copy of the data, values the copy with each method, and measures how "
           "well low values find the flipped rows (ROC-AUC: 0.5 = chance, 1 = perfect).")
x1, x2 = st.columns([2, 1])
audit_methods = x1.multiselect("Methods", methods, default=[_cli(m) for m in AUDIT_DEFAULT],
                               key="value.audit_methods",
                               help="consensus here combines the other methods checked, with weights chosen on the "
                                    "other rows' flips (cross-fitted), at no extra cost")
flip = x2.number_input("Share of labels flipped", 0.01, 0.45, 0.05, step=0.01, key="value.audit_flip")
audit_cols = list(ui.numeric_columns(ws_path, ds_id))
audit_agree = "(none)"
if audit_cols:
    audit_agree = x1.selectbox("Human agreement column", ["(none)", *audit_cols], key="value.audit_agreement",
                               index=1 + audit_cols.index("confidence") if "confidence" in audit_cols else 0,
                               help="also measure how each method's values track people (Spearman, rows whose "
                                    "label was kept), and let the consensus' weights track it too")
audit_job = ui.current_job("audit", ds_id)
audit_argv = ["audit", f"ws:{ds_id}", "--flip", f"{flip:g}", "--methods", ",".join(audit_methods)]
if audit_agree != "(none)":
    audit_argv += ["--agreement", audit_agree]
if st.button("Run the self-check", key="value.audit", icon=":material/fact_check:",
             disabled=(audit_job is not None and audit_job.active) or not audit_methods):
    with ui.guard():
        ui.start_job("audit", ds_id, audit_argv)
        st.rerun()
ui.job_note(audit_job)
audit_run = ws.latest_run("audit", dataset_id=ds_id)
if audit_run is not None:
    rows = audit_run.result.get("rows") or audit_run.result.get("table") or []
    if not rows:
        try:
            rows = ui.run_frame(ws_path, audit_run.id).to_dict("records")
        except WinnowError:
            rows = []
    if rows:
        tab = pd.DataFrame(rows)
        st.caption(f"Self-check {audit_run.number} · {_when(audit_run.created)} · "
                   f"{int(tab['n_flipped'].iloc[0]) if 'n_flipped' in tab else '?'} labels flipped")
        agree_col = audit_run.result.get("agreement_column")
        agree_name = f"Spearman with {agree_col}"
        show = tab.rename(columns={"auc": "ROC-AUC", "precision_at_k": "precision at number flipped",
                                   "agreement": agree_name})
        st.dataframe(show[[c for c in ("method", "ROC-AUC", "precision at number flipped", agree_name, "seconds")
                           if c in show]], hide_index=True,
                     column_config={"ROC-AUC": st.column_config.NumberColumn(format="%.3f"),
                                    "precision at number flipped": st.column_config.NumberColumn(format="%.3f"),
                                    agree_name: st.column_config.NumberColumn(format="%.3f"),
                                    "seconds": st.column_config.NumberColumn(format="%.1f")})
        if "auc" in tab:
            tab = tab.sort_values("auc", ascending=False)
            fig = go.Figure(go.Bar(x=tab["method"], y=tab["auc"], marker_color="#4c78a8",
                                   hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
            fig.add_hline(y=0.5, line_dash="dash", line_color="#7f7f7f", annotation_text="chance")
            fig.update_layout(height=300, margin=dict(l=10, r=10, t=20, b=10), yaxis=dict(title="ROC-AUC",
                              range=[0, 1]), xaxis_type="category")
            st.plotly_chart(fig, key="value.audit_chart")
        best = recommend(rows, agreement_name=agree_col)
        if best is not None:
            have = [r for r in done if r.method.replace("_", "-") == best[0]]
            st.caption(f"Best here: {best[1]}.")
            if not have:
                if st.button(f"Compute {best[0]} to colour the map by it", key="value.compute_best",
                             icon=":material/play_arrow:", disabled=job is not None and job.active):
                    with ui.guard():
                        best_argv = ["value", f"ws:{ds_id}", "--method", best[0]]
                        if best[0] == "consensus" and agree_col:
                            best_argv += ["--agreement", agree_col]
                        st.session_state["value.job"] = ui.start_job("value", ds_id, best_argv)
                        st.rerun()

# ------------------------------------------------------------------------------------------------ people
numeric_cols = ui.numeric_columns(ws_path, ds_id)
numeric = list(numeric_cols)
if numeric:
    st.subheader("Do low values match where people disagree?")
    st.caption("A column of human agreement (e.g. the share of annotators who chose the given label) against each "
               "method's newest finished run: Spearman's rho (higher: the method tracks people), and the mean "
               "agreement of the 5 % lowest-valued rows against all rows. Rows without a number are left out.")
    col = st.selectbox("Agreement column", ["(none)", *numeric], key="value.agreement_col",
                       index=1 + numeric.index("confidence") if "confidence" in numeric else 0)
    latest: dict[str, int] = {}
    for r in done:
        latest.setdefault(r.method, r.id)
    if col != "(none)" and latest:
        with ui.guard():
            agreement = numeric_cols[col]
            uid_order = ui.dataset_columns(ws_path, ds_id)["uid"]
            vals = {}
            for m, rid in latest.items():
                frame = _values(rid).set_index("uid")["value"]
                vals[_cli(m)] = frame.reindex(uid_order).to_numpy(dtype=float)
            table = pd.DataFrame(agreement_check(vals, agreement))
            table = table.rename(columns={"spearman": f"Spearman with {col}", "low_mean": f"mean {col}, lowest 5 %",
                                          "all_mean": f"mean {col}, all rows", "n": "rows with a number"})
            st.dataframe(table.drop(columns=["n_low"]), hide_index=True,
                         column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                                        if c.startswith(("Spearman", "mean"))})
