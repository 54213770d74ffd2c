"""Inspect: the most harmful rows first, one card each, with the evidence, and a decision per card."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

import ui
from core import curation, decisions
from core.valuation import significance

PAGE_SIZE = 10
REASONS = ["mislabelled", "ambiguous", "noise / off-topic", "duplicate", "other"]
ws = ui.workspace()
WS = str(ws.path)
st.title("Inspect")
st.session_state.setdefault("inspect.page", 0)


def _decide(ds_id: int, uid: str, action: str) -> None:
    """A card's button (or key), as a callback: recorded before the page runs, so one run shows the result."""
    # a kept row is fine: it carries no "mislabelled" (or other problem) reason
    reason = str(st.session_state.get(f"inspect.reason.{uid}") or "") if action != "keep" else ""
    note = str(st.session_state.get(f"inspect.target.{uid}") or "") if action == "relabel" else ""
    decisions.record(ws, ds_id, [uid], action, reason=reason, note=note, source="manual")
    st.session_state["inspect.flash"] = f"{action}: {uid}" + (f" (relabel to {note})" if note else "")


def _fmt(v: float, spec: str, missing: str = "–") -> str:
    return missing if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


with ui.guard():
    rec, ds = ui.active()
    run = ui.active_values_run(rec.id)
    if run is None:
        st.info("No valuation yet. Value the data first: the harmful rows are the ones with the lowest values.",
                icon=":material/insights:")
        st.page_link("pages/2_Value.py", label="Go to Value", icon=":material/insights:")
        st.stop()

    cols = ui.dataset_columns(WS, rec.id)
    uids, texts, labels = cols["uid"], cols["text"], cols["label"]
    va = ui.values_arrays(WS, rec.id, run.id)
    values, stderr, counts = va["value"], va["stderr"], va["counts"]
    verdict = va["verdict"]  # harmful only when its 95 % interval is below 0
    emb_id = run.embedding_id if run.embedding_id is not None else getattr(ui.active_embedding(rec.id), "id", None)
    preds = ui.predictions(rec.id, emb_id) if emb_id is not None else None
    agree_runs = ui.agreement_runs(rec.id, run)
    ranks = ui.agreement_frame(WS, rec.id, tuple(sorted(agree_runs.items()))) if agree_runs else pd.DataFrame()
    members = list(ranks.columns)
    state = ui.decision_state(rec.id)

    ui.first_run_note(rec.id, run)
    st.caption(f"values: {run.method} (run {run.number}) · lowest value first · "
               f"{state.counts.get('remove', 0):,} removed so far")
    c1, c2 = st.columns([2, 3])
    hide = c1.toggle("Hide rows already decided", value=True, key="inspect.hide_decided")
    order = va["order"]
    decided = ui.decision_column(rec.id, state.version) != ""
    if hide:
        order = order[~decided[order]]
    order = order[~np.isnan(values[order])]
    n_pages = max(1, math.ceil(len(order) / PAGE_SIZE))
    page = min(int(st.session_state["inspect.page"]), n_pages - 1)
    rows = order[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
    on_page = {uids[int(r)]: d for r in rows if decided[r] and (d := state.get(uids[int(r)])) is not None}

    nav = c2.columns([1, 2, 1])
    if nav[0].button("Previous", key="inspect.prev", icon=":material/chevron_left:", disabled=page == 0,
                     help="previous page (shortcut: P)", shortcut="P"):
        st.session_state["inspect.page"] = page - 1
        st.rerun()
    nav[1].text(f"page {page + 1} of {n_pages} · rows {page * PAGE_SIZE + 1:,}–"
                f"{page * PAGE_SIZE + len(rows):,} of {len(order):,}")
    if nav[2].button("Next", key="inspect.next", icon=":material/chevron_right:", disabled=page >= n_pages - 1,
                     help="next page (shortcut: N)", shortcut="N"):
        st.session_state["inspect.page"] = page + 1
        st.rerun()
    if (flash := st.session_state.pop("inspect.flash", None)) is not None:
        st.success("Decision recorded", icon=":material/check_circle:")
        st.text(flash)
        ui.toast_undo(flash)
    if len(rows) == 0:
        st.info("Nothing left to inspect: every valued row has a decision. Untick 'Hide rows already decided' "
                "to review them.", icon=":material/task_alt:")
        st.stop()

    ahead = order[(page + 1) * PAGE_SIZE:(page + 3) * PAGE_SIZE]  # computed with this page: the next cards
    nb_idx, nb_sim = ui.neighbours(WS, emb_id, tuple(int(r) for r in rows), ahead) if emb_id is not None \
        else (None, None)
    # (None when the embeddings are a preliminary sample's: neighbours come with all rows)
    rank_of = va["rank"]
    n_valued = va["n_valued"]
    first_open = next((int(r) for r in rows if uids[r] not in on_page), None)

    for j, r in enumerate(rows):
        r = int(r)
        uid = uids[r]
        with st.container(border=True, key=f"inspect.card.{j}"):
            left, right = st.columns([3, 2])
            with left:
                st.text(f"#{rank_of[r] + 1:,} of {n_valued:,}, lowest value first · uid {uid}")
                ui.text_block(texts[r])
                facts = [f"given label: {labels[r]}"]
                if preds is not None:
                    pr = preds.iloc[r]
                    facts.append(f"source classifier predicts: {pr['pred']} ({pr['confidence']:.0%}); "
                                 f"p(given label) = {pr['p_given']:.0%}")
                facts.append(f"value: {_fmt(values[r], '+.4f')} ± {_fmt(stderr[r], '.4f')}"
                             f"  ({_fmt(counts[r], '.0f')} estimates) · {verdict[r]}: "
                             f"{significance.LEGEND[verdict[r]]}")
                if len(members) > 1:
                    row_ranks = ranks.iloc[r].to_dict()
                    agree = curation.agreeing_members(row_ranks, members)
                    facts.append(f"methods ranking it in their lowest 10 %: {', '.join(agree) or 'none'} "
                                 f"({len(agree)} of {len(members)})")
                    facts.append("rank per method (0 % = lowest): " + ", ".join(
                        f"{m.removeprefix('rank_')} {_fmt(row_ranks[m], '.0%')}" for m in members))
                st.text("\n".join(facts))
                if (d := on_page.get(uid)) is not None:
                    st.text(f"decision: {d.action}" + (f" ({d.note})" if d.note else "")
                            + (f" — {d.reason}" if d.reason else "") + f" · via {d.source}")
            focus = r == first_open
            a = st.columns([2, 2, 1.4, 1.2, 1.4, 0.6], vertical_alignment="center")
            reason = a[0].selectbox("Reason", REASONS, key=f"inspect.reason.{uid}", label_visibility="collapsed")
            others = [c for c in rec.classes if c != labels[r]] or list(rec.classes)
            default = others.index(preds.iloc[r]["pred"]) if preds is not None and preds.iloc[r]["pred"] in others \
                else 0
            target = a[1].selectbox("Relabel to", others, index=default, key=f"inspect.target.{uid}",
                                    label_visibility="collapsed", help="the label it should have (kept as a note)")
            a[2].button("Remove", key=f"inspect.remove.{uid}", type="primary" if focus else "secondary",
                         help="drop it from the curated set" + (" (shortcut: X)" if focus else ""),
                         shortcut="X" if focus else None, width="stretch", on_click=_decide,
                         args=(rec.id, uid, "remove"))
            a[3].button("Keep", key=f"inspect.keep.{uid}",
                         help="it is fine: pin it" + (" (shortcut: K)" if focus else ""),
                         shortcut="K" if focus else None, width="stretch", on_click=_decide,
                         args=(rec.id, uid, "keep"))
            a[4].button("Relabel", key=f"inspect.relabel.{uid}",
                         help="note the right label; the row stays" + (" (shortcut: L)" if focus else ""),
                         shortcut="L" if focus else None, width="stretch", on_click=_decide,
                         args=(rec.id, uid, "relabel"))
            with right:
                st.caption("Nearest neighbours (cosine similarity) and their labels")
                if nb_idx is not None:
                    nb = pd.DataFrame({"similarity": nb_sim[j], "label": [labels[i] for i in nb_idx[j]],
                                       "text": [texts[i] for i in nb_idx[j]]})
                    same = int((nb["label"] == labels[r]).sum())
                    st.dataframe(nb, hide_index=True, key=f"inspect.nb.{j}",
                                 column_config={"similarity": st.column_config.NumberColumn(format="%.2f"),
                                                "text": st.column_config.TextColumn(width="large")})
                    st.text(f"{same} of {len(nb)} neighbours share its label")
                elif ui.is_preliminary(run):
                    st.text("nearest neighbours come with the full run, once every row is embedded")
                else:
                    st.text("no embeddings for this run")
