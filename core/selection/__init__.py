"""Diversity-first selection: k-means clusters with summaries, then subsets of exactly the budget.

`fit_clusters` -> `Clusters`; `summarize_clusters` -> one dict per cluster; `select_*` -> `Selection`;
`plan_*(...).preview(budget, weights, last=...)` -> `Preview` in milliseconds; `save_*` / `load_*` keep clusters
and subsets in the workspace. Method: Diversify and Conquer (arXiv 2409.11378), as DESIGN.md fixes it.
"""
from __future__ import annotations

from core.selection.clusters import K_GRID, Clusters, fit_clusters, summaries_table, summarize_clusters
from core.selection.quality import cross_fitted_proba, label_confidence, rank_normalise
from core.selection.store import (cluster_summaries, decided, ensure_clusters, find_clusters, judge_proba,
                                  last_selection, load_clusters, load_selection, removal_count, save_clusters,
                                  save_selection)
from core.selection.strategies import (
    NEEDS_CLUSTERS,
    NEEDS_VALUES,
    STRATEGIES,
    Preview,
    Selection,
    SelectionPlan,
    TrainFn,
    align_values,
    clean_removal_count,
    plan_clean_kmq,
    plan_kmq,
    plan_strategy,
    plan_random,
    plan_stratified,
    plan_top_value,
    preview,
    resolve_budget,
    select_clean_kmq,
    select_drop_negative,
    select_iterative,
    select_kmq,
    select_random,
    select_stratified,
    select_top_value,
)

__all__ = [
    "K_GRID", "NEEDS_CLUSTERS", "NEEDS_VALUES", "STRATEGIES", "decided", "plan_strategy", "Clusters", "Preview", "Selection", "SelectionPlan", "TrainFn", "align_values",
    "cross_fitted_proba", "fit_clusters", "label_confidence", "clean_removal_count", "plan_clean_kmq", "plan_kmq", "plan_random", "plan_stratified",
    "plan_top_value", "preview", "rank_normalise", "resolve_budget", "select_clean_kmq", "select_drop_negative", "select_iterative",
    "select_kmq", "select_random", "select_stratified", "select_top_value", "summaries_table",
    "summarize_clusters", "find_clusters", "judge_proba", "last_selection", "load_clusters", "load_selection",
    "save_clusters", "save_selection", "cluster_summaries", "ensure_clusters", "removal_count",
]
