"""Select: a subset of exactly the budget, spread over clusters whose weights a person sets, previewed live.

Clusters come from the `cluster` job; the preview is the selection engine's `SelectionPlan.preview` (array work on
a cached plan, a few milliseconds); saving a one-shot strategy is a direct core call, iterative refinement (which
trains a classifier per round) runs as the `select` job.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core import data
from core.errors import WinnowError
from core.selection import NEEDS_CLUSTERS, NEEDS_VALUES, STRATEGIES
from core.workspace import Workspace

PAGE_SIZE = 8  # clusters shown per page of the weight panel
W_KEY = "select.weights"  # session state: {clusters run id: {cluster: weight}}, kept while widgets are paged out
NAMES = {"random": "random", "stratified": "stratified (keeps label shares)", "top_value": "top value",
         "drop_negative": "drop negative values", "kmq": "kMQ (clusters × quality)",
         "clean_kmq": "clean, then diversify (drop significantly harmful rows, then kMQ)",
         "iterative": "iterative refinement (kMQ in rounds)"}

ws = ui.workspace()
ws_path = str(ws.path)
ds_id = ui.active_dataset_id()
rec = ws.dataset(ds_id)
st.session_state.setdefault(W_KEY, {})

st.title("Select")
st.caption("Choose a subset of exactly your budget. Rows you removed are never in it; rows you kept are always in "
           "and count toward the budget.")


# ------------------------------------------------------------------------------------------------ cached reads
@st.cache_resource(max_entries=4, show_spinner=False)
def _labels(ws_path: str, dataset_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(uids, integer label codes) of the dataset (read once per process)."""
    cols = ui.dataset_columns(ws_path, dataset_id)
    classes = Workspace(ws_path).dataset(dataset_id).classes
    codes = pd.Categorical(cols["label"], categories=classes).codes.astype(np.int64)
    return np.asarray(cols["uid"], dtype=str), codes


@st.cache_resource(max_entries=8, show_spinner="Preparing the preview…")
def _plan(ws_path: str, dataset_id: int, strategy: str, clusters_run_id: int | None, values_run_id: int | None,
          decisions_key: str, seed: int, temperature: float) -> dict[str, Any]:
    """The engine's precomputed plan for this strategy (any budget/weights is then array work), or, for
    drop_negative, its fixed subset. `decisions_key` only keys the cache (the decisions are read here)."""
    from core import selection
    from core.selection.store import judge_proba, load_clusters
    from core.valuation import store

    w = Workspace(ws_path)
    uids, y = _labels(ws_path, dataset_id)
    classes = w.dataset(dataset_id).classes
    removed, pinned = selection.decided(w, dataset_id)
    cl = load_clusters(w, clusters_run_id) if clusters_run_id is not None else None
    if cl is not None and not np.array_equal(cl.uids.astype(str), uids):
        raise WinnowError(f"clusters run {clusters_run_id} does not match this dataset's rows; cluster again")
    values = store.load_values(w, values_run_id) if values_run_id is not None else None
    n_remove = selection.removal_count(strategy, values, w.run(values_run_id) if values_run_id is not None else None)
    out: dict[str, Any] = {"uids": uids, "y": y, "classes": classes, "cluster": None if cl is None else cl.labels,
                           "k": 0 if cl is None else cl.k, "n_removed": len(removed), "n_pinned": len(pinned)}
    judge = None
    if strategy in NEEDS_CLUSTERS and values is None:  # quality = cross-fitted label confidence (cached per embedding)
        run = w.run(clusters_run_id)
        X = ui.embedding_matrix(ws_path, run.embedding_id)
        judge = judge_proba(w, X, y, n_classes=len(classes), embedding_id=run.embedding_id, seed=seed)
    plan = selection.plan_strategy(strategy, uids=uids, y=y, classes=classes, clusters=cl, values=values,
                                   pinned=pinned, removed=removed, seed=seed, temperature=temperature, judge=judge,
                                   n_remove=n_remove)
    if isinstance(plan, selection.Selection):  # drop_negative: a fixed subset
        out.update(plan=None, fixed=plan, n_remove=n_remove)
        return out
    out["plan"] = plan
    return out


@st.cache_resource(max_entries=8, show_spinner=False)
def _saved_uids(ws_path: str, run_id: int) -> np.ndarray:
    """The uids of a saved subset (one array object per run, so the plan's diff memo hits)."""
    return ui.run_frame(ws_path, run_id)["uid"].astype(str).to_numpy()


def _decisions_key(dataset_id: int) -> tuple[str, int, int]:
    from core.selection import decided

    removed, pinned = decided(ws, dataset_id)
    h = hashlib.sha1(("\n".join(removed) + "\0" + "\n".join(pinned)).encode()).hexdigest()[:16]
    return h, len(removed), len(pinned)


def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


# ------------------------------------------------------------------------------------------------ strategy
values_run = ui.active_values_run(ds_id)
c1, c2 = st.columns([2, 3])
strategy = c1.selectbox("Strategy", STRATEGIES, index=STRATEGIES.index("kmq"), key="select.strategy",
                        format_func=lambda s: NAMES.get(s, s))
with c2:
    st.caption("Quality inside clusters")
    if values_run is not None:
        st.text(f"values of valuation run {values_run.number} ({values_run.method}); change it on the Value page")
    else:
        st.text("no valuation run yet: kMQ uses the cross-fitted confidence in each given label")
if strategy in NEEDS_VALUES and values_run is None:
    st.warning("This strategy ranks rows by value: compute values on the Value page first.",
               icon=":material/warning:")
    st.page_link("pages/2_Value.py", label="Go to Value", icon=":material/insights:")
    st.stop()

# ------------------------------------------------------------------------------------------------ clusters
st.subheader("Clusters")
cluster_job = ui.current_job("cluster", ds_id)
k1, k2, k3 = st.columns([2, 2, 2], vertical_alignment="bottom")
k_mode = k1.radio("Number of clusters", ["auto", "set"], horizontal=True, key="select.k_mode",
                  help="auto: the best silhouette over a range of k that grows with the rows")
k_value = k2.number_input("k", min_value=2, max_value=max(2, min(512, rec.n_rows // 2)),
                          value=min(16, max(2, rec.n_rows // 10)),
                          step=1, key="select.k", disabled=k_mode == "auto")
if k3.button("Cluster", key="select.cluster", icon=":material/hub:", type="primary" if
             ws.latest_run("clusters", dataset_id=ds_id) is None else "secondary",
             disabled=cluster_job is not None and cluster_job.active):
    argv = ["cluster", f"ws:{ds_id}"] + (["--k", str(int(k_value))] if k_mode == "set" else [])
    with ui.guard():
        ui.start_job("cluster", ds_id, argv)
        st.rerun()
ui.job_note(cluster_job)

clusters_runs = ws.runs("clusters", dataset_id=ds_id, status="done")
clusters_run = None
if clusters_runs:
    # default: the clusters the last `cluster` job asked for (it reuses an earlier run with the same k)
    default = 0
    if cluster_job is not None and cluster_job.status == "done":
        argv = cluster_job.argv
        want = int(argv[argv.index("--k") + 1]) if "--k" in argv else None
        for i, r in enumerate(clusters_runs):
            if r.params.get("k_requested") == want or (want is not None and r.params.get("k") == want):
                default = i
                break
    signature = [*(r.id for r in clusters_runs), None if cluster_job is None else (cluster_job.id, cluster_job.status)]
    if st.session_state.get("select.clusters_seen") != signature:  # new clusters: use them
        st.session_state.pop("select.clusters_run", None)
        st.session_state["select.clusters_seen"] = signature
    by_id = {r.id: r for r in clusters_runs}

    def _clusters_name(i: int) -> str:
        r = by_id[i]
        how = "auto" if r.params.get("k_requested") is None else "set"
        return f"clustering {r.number}: k = {r.params.get('k')} ({how}), {_when(r.created)}"

    chosen = st.selectbox("Clusters to use", list(by_id), index=default, key="select.clusters_run",
                          format_func=_clusters_name)
    clusters_run = by_id[chosen]
    if clusters_run.result.get("k_reason"):  # why this many clusters
        st.caption(ui.plain(clusters_run.result["k_reason"]))
elif strategy in NEEDS_CLUSTERS:
    st.info("kMQ and iterative refinement need clusters: press Cluster (it embeds the texts first if needed).",
            icon=":material/info:")
    st.stop()

# ------------------------------------------------------------------------------------------------ options
with st.expander("Options"):
    o1, o2 = st.columns(2)
    seed = int(o1.number_input("Seed", min_value=0, value=0, step=1, key="select.seed"))
    temperature = float(o2.number_input("Temperature T (inside a cluster, p ∝ exp(quality / T))", min_value=0.0,
                                        value=0.1, step=0.05, key="select.temperature",
                                        disabled=strategy not in NEEDS_CLUSTERS))
    rounds = int(o1.number_input("Rounds (iterative)", min_value=1, max_value=10, value=3, key="select.rounds",
                                 disabled=strategy != "iterative"))

dkey, n_removed, n_pinned = _decisions_key(ds_id)
try:
    plan_info = _plan(ws_path, ds_id, strategy, None if clusters_run is None else clusters_run.id,
                      None if values_run is None else values_run.id, dkey, seed, temperature)
except WinnowError as e:
    st.error(ui.plain(str(e)), icon=":material/error:")
    st.stop()
last_run = ws.latest_run("selection", dataset_id=ds_id)


# ------------------------------------------------------------------------------------------------ subset (live)
def _store_weight(clusters_run_id: int, c: int) -> None:
    st.session_state[W_KEY].setdefault(clusters_run_id, {})[c] = float(st.session_state[f"select.w.{c}"])


def _reset_weights(clusters_run_id: int, k: int) -> None:
    st.session_state[W_KEY][clusters_run_id] = {}
    for c in range(k):
        st.session_state.pop(f"select.w.{c}", None)


def _bars(x: list[Any], y: list[int], title: str, *, hover: list[str] | None = None) -> go.Figure:
    fig = go.Figure(go.Bar(x=x, y=y, marker_color="#4c78a8", hovertext=hover, hoverinfo="x+y+text" if hover else "x+y"))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=10), xaxis_type="category",
                      yaxis_title="rows")
    return fig


@st.fragment
def subset_panel(info: dict[str, Any], strategy: str, clusters_run: Any, values_run: Any, last_run: Any,
                 rounds: int, seed: int, temperature: float) -> None:
    n_eligible = len(info["uids"]) - info["n_removed"]
    plan = info["plan"]
    weighted = strategy in NEEDS_CLUSTERS and clusters_run is not None
    cr_id = None if clusters_run is None else clusters_run.id
    if st.session_state.get("select.sliders_for") != cr_id:  # other clusters: the sliders start from their weights
        for key in [k for k in st.session_state if str(k).startswith("select.w.")]:
            del st.session_state[key]
        st.session_state["select.sliders_for"] = cr_id
    weights: dict[int, float] = dict(st.session_state[W_KEY].get(cr_id, {}))

    st.subheader("Budget")
    b1, b2 = st.columns([1, 3])
    mode = b1.radio("Budget as", ["fraction", "count"], horizontal=True, key="select.budget_mode",
                    disabled=strategy == "drop_negative")
    if mode == "fraction":
        frac = b2.slider("Share of the rows not removed", 0.01, 1.0, 0.3, 0.01, key="select.fraction",
                         disabled=strategy == "drop_negative")
        budget: int | float = float(frac)
    else:
        budget = int(b2.number_input("Rows", min_value=1, max_value=max(1, n_eligible),
                                     value=min(max(1, n_eligible // 3), 5000), step=100, key="select.count",
                                     disabled=strategy == "drop_negative"))

    # weights beside each cluster's summary (left), the preview beside them (right)
    summaries = (clusters_run.result.get("summaries") or []) if clusters_run is not None else []
    col_clusters, col_preview = st.columns([3, 2], gap="large")
    if clusters_run is not None:
        with col_clusters:
            st.subheader("Cluster weights" if weighted else "Clusters")
            st.caption("A weight multiplies the cluster's share of the budget; 0 leaves it out." if weighted else
                       "Weights apply to kMQ and iterative refinement; this strategy ignores clusters.")
            k = int(clusters_run.result.get("k") or len(summaries))
            h1, h2, h3 = st.columns([3, 2, 2], vertical_alignment="bottom")
            order_by = h1.selectbox("Order by", ["size (largest first)", "mean value (lowest first)",
                                                 "label purity (lowest first)"], key="select.order")
            n_pages = max(1, -(-k // PAGE_SIZE))
            page = int(h2.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1,
                                       key="select.page")) - 1
            if weighted:
                h3.button("Reset weights", key="select.reset", on_click=_reset_weights, args=(cr_id, k))
            order = list(range(len(summaries)))
            if order_by.startswith("mean") and summaries and summaries[0].get("value_mean") is not None:
                order.sort(key=lambda i: summaries[i].get("value_mean") or 0.0)
            elif order_by.startswith("label"):
                order.sort(key=lambda i: summaries[i].get("majority_share") or 0.0)
            for i in order[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]:
                s = summaries[i]
                c = int(s["cluster"])
                size = max(int(s.get("size") or 0), 1)
                bits = [f"{s.get('size', 0):,} rows ({100 * (s.get('share') or 0):.1f} %)"]
                if s.get("value_mean") is not None:
                    bits.append(f"mean value {s['value_mean']:+.3g}")
                if s.get("share_negative") is not None:
                    bits.append(f"{100 * s['share_negative']:.0f} % below 0")
                mix = sorted((s.get("label_counts") or {}).items(), key=lambda kv: -kv[1])
                with st.container(border=True):
                    left, right = st.columns([3, 2])
                    left.text(f"{c} · {s.get('name', '')}\n" + " · ".join(bits) + "\nlabels: "
                              + ", ".join(f"{lab} {100 * n / size:.0f} %" for lab, n in mix if n)
                              + "\nwords: " + " ".join(s.get("top_words") or []))
                    key = f"select.w.{c}"
                    if key not in st.session_state:
                        st.session_state[key] = float(weights.get(c, 1.0))
                    right.slider(f"Weight of cluster {c}", 0.0, 3.0, step=0.1, key=key, disabled=not weighted,
                                 on_change=_store_weight, args=(cr_id, c))
                    with st.expander("Texts nearest the centroid"):
                        for ex in s.get("examples") or []:
                            st.text(f"[{ex.get('label')}] {ex.get('text')}")
        weights = dict(st.session_state[W_KEY].get(cr_id, {}))
    else:
        col_preview = st.container()
    user_weights = {c: w for c, w in weights.items() if abs(w - 1.0) > 1e-9} if weighted else {}

    with col_preview:
        # preview
        st.subheader("Preview")
        last_uids = _saved_uids(ws_path, last_run.id) if last_run is not None else None
        uids, y, classes = info["uids"], info["y"], info["classes"]
        try:
            t0 = time.perf_counter()
            if plan is not None:
                pv = plan.preview(budget, user_weights or None, last=last_uids)
                mask = plan.mask(budget, user_weights or None) if not pv.per_class else None
                n, added, dropped = pv.n, pv.added, pv.removed
                per_cluster = pv.per_cluster
                per_class = pv.per_class or {classes[j]: int(v) for j, v in
                                             enumerate(np.bincount(y[mask], minlength=len(classes)))}
            else:  # drop_negative: a fixed subset
                sel = info["fixed"]
                mask = np.isin(uids, sel.uids)
                n = int(mask.sum())
                last_mask = np.isin(uids, last_uids) if last_uids is not None else None
                added = n if last_mask is None else int((mask & ~last_mask).sum())
                dropped = 0 if last_mask is None else int((last_mask & ~mask).sum())
                per_class = {classes[j]: int(v) for j, v in enumerate(np.bincount(y[mask], minlength=len(classes)))}
                per_cluster = ({int(c): int(v) for c, v in enumerate(np.bincount(info["cluster"][mask],
                                                                                  minlength=info["k"]))}
                               if info["cluster"] is not None else {})
            ms = 1000 * (time.perf_counter() - t0)
        except WinnowError as e:
            st.error(ui.plain(str(e)), icon=":material/error:")
            return
        m1, m4 = st.columns(2)
        m2, m3 = st.columns(2)
        m1.metric("Rows in the subset", f"{n:,}", help=f"of {n_eligible:,} eligible rows")
        m2.metric("Removed rows left out", f"{info['n_removed']:,}")
        m3.metric("Pinned rows kept", f"{info['n_pinned']:,}")
        if last_run is not None:
            m4.metric(f"vs saved subset {last_run.number}", f"+{added:,} / −{dropped:,}")
        else:
            m4.metric("vs last saved subset", "—", help="no subset saved yet")
        if strategy == "iterative":
            st.caption("The preview shows the first round (kMQ with your weights); iterative refinement re-weights "
                       "the clusters after each round, so the saved subset differs.")
        if strategy == "clean_kmq" and plan is not None:
            st.caption(f"Clean, then diversify: {plan.params['n_dropped']:,} rows dropped as "
                       f"{plan.params['rule']}; the budget is spread over the clusters in proportion to their size "
                       "before cleaning (kMQ's shares), rows inside a cluster by value.")
        if strategy == "drop_negative":
            how = (f"the {info['n_remove']:,} lowest values (the run's suggested removal)" if info.get("n_remove")
                   is not None else "every row valued below 0")
            st.caption(f"Drop-negative keeps every eligible row except {how}; the budget does not apply.")
        g1, g2 = st.container(), st.container()
        if per_cluster:
            sizes = {int(s["cluster"]): int(s["size"]) for s in summaries}
            xs = list(per_cluster)
            g1.plotly_chart(_bars([str(c) for c in xs], [per_cluster[c] for c in xs], "Rows per cluster",
                                  hover=[f"of {sizes.get(c, 0):,}" for c in xs]),
                            key="select.per_cluster")
        g2.plotly_chart(_bars(list(per_class), list(per_class.values()), "Rows per class"), key="select.per_class")
        full_mix = {classes[j]: int(v) for j, v in enumerate(np.bincount(y, minlength=len(classes)))}
        for w in data.class_mix_warnings(full_mix, per_class):
            st.warning(ui.plain(w), icon=":material/warning:")
        st.caption(f"preview computed in {ms:.0f} ms")

        # save
        note = st.text_input("Note (optional)", key="select.note", max_chars=200)
        if st.button("Save subset", key="select.save", type="primary", icon=":material/save:", width="stretch"):
            with ui.guard():
                if strategy == "iterative":
                    argv = ["select", f"ws:{ds_id}", "--strategy", "iterative", "--budget", str(budget),
                            "--rounds", str(rounds), "--temperature", str(temperature), "--seed", str(seed),
                            "--out", str(ws.path / "subsets" / f"iterative-{time.strftime('%Y%m%d-%H%M%S')}.csv")]
                    if clusters_run.params.get("k_requested") is not None:
                        argv += ["--k", str(clusters_run.params["k"])]
                    argv += ["--run", str(values_run.id)] if values_run is not None else ["--no-values"]
                    if user_weights:
                        argv += ["--weights", ",".join(f"{c}={w:g}" for c, w in sorted(user_weights.items()))]
                    ui.start_job("select", ds_id, argv)
                else:
                    from core.selection.store import save_selection

                    sel = info["fixed"] if plan is None else plan.select(budget, user_weights or None)
                    run_id = save_selection(ws, ds_id, sel, embedding_id=getattr(clusters_run, "embedding_id", None),
                                            clusters_run_id=getattr(clusters_run, "id", None),
                                            values_run_id=getattr(values_run, "id", None), note=note)
                    st.session_state["select.saved"] = run_id
                st.rerun(scope="app")


subset_panel(plan_info, strategy, clusters_run, values_run, last_run, rounds, seed, temperature)
if (saved := st.session_state.pop("select.saved", None)) is not None:
    st.success(f"Saved subset {ui.run_number(saved)}.", icon=":material/check:")
ui.job_note(ui.current_job("select", ds_id))

# ------------------------------------------------------------------------------------------------ saved subsets
st.subheader("Saved subsets")
saved_runs = ws.runs("selection", dataset_id=ds_id)
if not saved_runs:
    st.caption("None yet. A saved subset can be fine-tuned on the Fine-tune page and exported on the Export page.")
else:
    table = pd.DataFrame([{
        "subset": r.number, "strategy": r.method, "rows": r.result.get("n"), "status": r.status,
        "budget": r.params.get("budget_requested", r.params.get("budget")),
        "weights": ", ".join(f"{c}={w:g}" for c, w in (r.params.get("weights") or {}).items()),
        "values run": ui.run_number(r.params.get("values_run_id")),
        "clusters": ui.run_number(r.params.get("clusters_run_id")),
        "seed": r.params.get("seed"), "note": r.params.get("note", ""), "saved": _when(r.created),
    } for r in saved_runs])
    st.dataframe(table, hide_index=True)
    iterative = [r for r in saved_runs if r.method == "iterative" and r.result.get("history")]
    if iterative:
        st.subheader("Iterative refinement: cluster weights per round")
        pick = st.selectbox("Subset", [r.id for r in iterative], key="select.history_run",
                            format_func=lambda i: f"subset {ui.run_number(i)}")
        hist = next(r for r in iterative if r.id == pick).result["history"]
        fig = go.Figure()
        k = len(hist[0]["weights"])
        for c in range(k):
            fig.add_trace(go.Scatter(x=[h["round"] for h in hist], y=[h["weights"][c] for h in hist],
                                     mode="lines+markers", name=f"cluster {c}"))
        fig.update_layout(height=340, margin=dict(l=10, r=10, t=20, b=10), xaxis_title="round",
                          yaxis_title="weight (mean 1)", xaxis=dict(dtick=1))
        st.plotly_chart(fig, key="select.history")
