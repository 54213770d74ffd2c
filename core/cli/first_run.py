"""Sub-command `first-run`: the progressive first valuation (a preliminary sample, then every row); see core.first_run.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from core import first_run
from core.cli import common
from core.projection import PCA_BELOW
from core.runs import called
from core.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    from core.cli.value import add_value_args

    p = sub.add_parser(
        "first-run", help="the first valuation of DATA: a preliminary sample first, then every row, map and clusters",
        description="What the app's first Compute values runs. On data larger than --sample-above rows it first "
                    "embeds, values, maps and clusters a class-stratified sample of up to --sample rows (as many as "
                    "--sample-seconds of embedding allow when their texts are not cached yet; recorded as "
                    "preliminary runs, shown at once), then embeds the rest (cached texts are not redone), maps and "
                    "clusters every row and values every row with the same options as `value` (that run replaces "
                    "the preliminary one), then cross-fits the source classifier's predictions. Resumable: a "
                    "second call reuses everything already done.")
    add_value_args(p)
    g = p.add_argument_group("first-run options")
    g.add_argument("--sample", type=int, default=first_run.SAMPLE_SIZE, metavar="N",
                   help=f"rows of the preliminary sample at most (default {first_run.SAMPLE_SIZE:,})")
    g.add_argument("--sample-seconds", type=float, default=None, metavar="S",
                   help="on a cold embedding cache the sample is what this many seconds of embedding embed (at least "
                        f"{first_run.SAMPLE_MIN:,} rows; default {first_run.SAMPLE_SECONDS:g}), so the first map "
                        "does not wait for every row of it")
    g.add_argument("--sample-above", type=int, default=first_run.SAMPLE_ABOVE, metavar="N",
                   help=f"start from a sample only above this many rows (default {first_run.SAMPLE_ABOVE:,})")
    p.set_defaults(func=cmd_first_run)

    w = sub.add_parser(
        "warm-up", help="compile the map's UMAP kernels once for this install (the README's first command runs it)",
        description="umap-learn compiles its numba kernels on first use and keeps them on disk (next to its "
                    "sources, or in $NUMBA_CACHE_DIR): done once here, at set-up, the first map of a new install "
                    "does not wait for the compilation. A second call only loads them.")
    w.set_defaults(func=cmd_warm_up)


def cmd_warm_up(args: argparse.Namespace, ws: Workspace) -> int:
    from core.projection import warm_up

    t0 = time.perf_counter()
    print("winnow: compiling the map's kernels (once per install; a second call only loads them) ...",
          file=sys.stderr, flush=True)
    warm_up()
    print(f"winnow: the map's kernels are ready ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return 0


class _Slice:
    """The part [start, end] of a parent Progress, with the interface `value`'s internals use."""

    def __init__(self, parent: common.Progress, start: float, end: float) -> None:
        self.parent, self.start, self.end = parent, start, end
        self.bar = parent.bar

    def _map(self, f: float) -> float:
        return self.start + (self.end - self.start) * min(max(f, 0.0), 1.0)

    def __call__(self, fraction: float, message: str = "", partial: Any = None) -> None:
        self.parent(self._map(fraction), message, partial)

    def stage(self, a: float, b: float, label: str = "") -> Any:
        return self.parent.stage(self._map(a), self._map(b), label)

    def close(self, message: str = "done") -> None:
        self.parent(self.end, message, eta="")


def cmd_first_run(args: argparse.Namespace, ws: Workspace) -> int:
    from core.valuation import method_key

    key = method_key(args.method)
    prog = common.progress(args, ws, "first run")
    try:
        return _first_run(args, ws, key, prog)
    finally:
        prog.bar.close()


def _full_values_done(ws: Workspace, dataset_id: int, key: str, run_params: dict[str, Any]) -> Any:
    import json

    want = json.loads(json.dumps(run_params, default=str))
    for r in ws.runs("values", dataset_id=dataset_id, method=key, status="done"):
        if not first_run.is_preliminary(r) and r.params == want:
            return r
    return None


def _first_run(args: argparse.Namespace, ws: Workspace, key: str, prog: common.Progress) -> int:
    from core import data
    from core.cli.value import _valid_split, value_options

    loaded = common.open_data(args, ws)
    ds_id, n = loaded.dataset_id, len(loaded.ds)
    job_id = getattr(args, "job", None)
    valid, valid_id = _valid_split(args, ws, loaded.classes, prog.stage(0.0, 0.01, "embedding --valid"))
    opts, run_params = value_options(args, key, valid_id)
    valued = _full_values_done(ws, ds_id, key, run_params)
    if valued is not None:
        print(f"every row of dataset {ds_id} is already valued with these options ({called(ws, valued)})",
              file=sys.stderr)
    sampled = valued is None and first_run.needs_sample(n, sample_size=args.sample, sample_above=args.sample_above)
    first_run.set_state(ws, ds_id, phase="sample" if sampled else "full", rows=n, job=job_id,
                        sample=args.sample if sampled else None, finish_at=None, started=time.time())
    texts = [str(t) for t in data.column(loaded.ds, "text")]
    uids = np.asarray([str(u) for u in data.column(loaded.ds, "uid")])
    labels = [str(v) for v in data.column(loaded.ds, "label")]
    y = np.asarray(data.label_codes(loaded.ds, loaded.classes), dtype=np.int64)
    start = 0.0
    if sampled:
        start = 0.35
        estimates = _preliminary(args, ws, loaded, key, opts, run_params, valid, texts, uids, labels, y,
                                 _Slice(prog, 0.01, start))
        first_run.set_state(ws, ds_id, phase="full", finish_at=time.time() + sum(estimates.values()),
                            estimates=estimates)
    _full(args, ws, loaded, key, texts, uids, labels, _Slice(prog, start, 1.0), sampled=sampled,
          valued=valued is not None)
    prog.close("first run done: every row valued and mapped")
    return 0


def _preliminary(args: argparse.Namespace, ws: Workspace, loaded: common.Loaded, key: str, opts: dict[str, Any],
                 run_params: dict[str, Any], valid: Any, texts: list[str], uids: np.ndarray, labels: list[str],
                 y: np.ndarray, prog: _Slice) -> dict[str, float]:
    """Embed, value, map and cluster the sample (reusing what a stopped run left); returns the rest's estimates."""
    from core import embed
    from core import runs
    from core.valuation import store
    from core.projection import ensure_projection
    from core.selection import fit_clusters, summarize_clusters
    from core.selection.store import save_clusters
    from core.valuation import value_dataset

    ds_id, n, asked = loaded.dataset_id, len(texts), int(args.sample)
    spec = embed.resolve_model(getattr(args, "model", None), getattr(args, "precision", "float32"))
    cache_dir = ws.path / "cache" / "embeddings"
    order = first_run.sample_order(labels, asked, args.seed)
    cache = embed.EmbeddingCache(cache_dir, spec.key)
    was_missing = cache.lookup([embed.text_key(texts[i]) for i in order]) < 0
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    warm = None
    if was_missing.any() and asked >= PCA_BELOW:  # compile UMAP while the texts are embedded (once per machine)
        import threading

        from core.projection import warm_up

        warm = threading.Thread(target=warm_up, kwargs={"dim": spec.dim or 384}, daemon=True)
        warm.start()
    st = first_run.state(ws, ds_id) or {}
    if st.get("sample_asked") == [asked, args.seed] and st.get("sample_rows"):  # resumed: the same sample again
        pos = np.sort(order[:int(st["sample_rows"])])
    else:
        pos = first_run.embed_sample(texts, order, spec=spec, cache_dir=cache_dir, seconds=args.sample_seconds,
                                     batch_size=getattr(args, "batch_size", 32),
                                     on_progress=prog.stage(0.0, 0.45, f"embedding a sample of up to {asked:,} rows"))
        first_run.set_state(ws, ds_id, sample_asked=[asked, args.seed], sample_rows=len(pos))
    size = len(pos)
    first_run.set_state(ws, ds_id, sample=size)
    uncached = int(was_missing[np.isin(order, pos)].sum())  # texts of the sample this call embedded
    s_texts, s_uids, s_labels, s_y = [texts[i] for i in pos], uids[pos], [labels[i] for i in pos], y[pos]
    prelim = {"preliminary": True, "sample": size, "of": n, "sample_seed": args.seed}

    # 1. embeddings of the sample (a workspace record of their own, marked preliminary)
    model_key = f"{spec.key}@sample{size}-seed{args.seed}"
    rec = ws.embedding(ds_id, model_key)
    whole = ws.embedding(ds_id, spec.key)
    if rec is not None and rec.n_rows == size:
        emb_id, Xs = rec.id, np.asarray(ws.read_array(rec.relpath), dtype=np.float32)
    else:
        if whole is not None and whole.n_rows == n:  # every row is embedded already: take the sample's rows
            Xs = np.asarray(ws.read_array(whole.relpath, mmap=True)[pos], dtype=np.float32)
        else:
            Xs, _, _ = embed._embed_cached(s_texts, model=spec, cache_dir=cache_dir,  # from the cache now
                                           batch_size=getattr(args, "batch_size", 32), precision=spec.precision,
                                           on_progress=None)
        rel = f"embeddings/{ds_id}-{spec.key}-sample{size}-seed{args.seed}.npy"
        ws.write_array(rel, Xs)
        emb_id = ws.register_embedding(dataset_id=ds_id, model=model_key, dim=int(Xs.shape[1]), n_rows=size,
                                       relpath=rel, seconds=time.perf_counter() - t0,
                                       meta={"model": spec.name, "path": spec.path, "precision": spec.precision,
                                             "max_length": spec.max_length, **prelim})
    timings["embed"] = time.perf_counter() - t0
    if warm is not None:
        warm.join()

    # 2. values of the sample, same method and options as the full run
    t0 = time.perf_counter()
    params = {**run_params, **prelim, "suggest_removal": False}
    done = [r for r in ws.runs("values", dataset_id=ds_id, method=key, status="done")
            if r.embedding_id == emb_id and first_run.is_preliminary(r)]
    if done:
        values_run = done[0]
    else:
        with runs.recorded(ws, "values", dataset_id=ds_id, method=key, params=params, embedding_id=emb_id,
                           job_id=getattr(args, "job", None)) as rec_run:
            call_opts = dict(opts)
            if opts.get("agreement_name"):  # the consensus' agreement column, on the sample's rows
                from core.cli.value import agreement_column

                call_opts["agreement"] = agreement_column(loaded.ds, opts["agreement_name"])[pos]
            values = value_dataset(Xs, s_y, s_uids, method=key, valid=valid, seed=args.seed, classes=loaded.classes,
                                   valid_fraction=args.valid_fraction,
                                   on_progress=prog.stage(0.45, 0.7, f"valuing the sample of {size:,}"), **call_opts)
            store.save_values(ws, rec_run.id, values)
            rec_run.done({**store.summary(values), "method_params": values.params, **prelim}, seconds=values.seconds)
        run_id = rec_run.id
        values_run = ws.run(run_id)
    timings["value"] = time.perf_counter() - t0

    # 3. the map of the sample
    t0 = time.perf_counter()
    fit_seconds: list[float] = []

    def on_map(f: float, message: str = "", _: Any = None, _stage: Any = prog.stage(0.7, 0.9, "map of the sample")
               ) -> None:
        if message.startswith("UMAP on"):
            fit_seconds.append(time.perf_counter())
        _stage(f, message)

    proj_id, _ = ensure_projection(ws, ds_id, emb_id, Xs, list(s_uids), job_id=getattr(args, "job", None),
                                   strata=s_labels, on_progress=on_map)
    ws.update_run(proj_id, result=prelim)
    timings["project"] = time.perf_counter() - t0
    if fit_seconds:  # without the one-off numba compilation
        timings["project_fit"] = time.perf_counter() - fit_seconds[0]

    # 4. clusters of the sample, named, with the sample's values
    t0 = time.perf_counter()
    if not any(r.embedding_id == emb_id for r in ws.runs("clusters", dataset_id=ds_id, status="done")):
        cl = fit_clusters(Xs, seed=args.seed, uids=s_uids, on_progress=prog.stage(0.9, 1.0, "clusters of the sample"))
        frame = ws.load_run_frame(values_run.id)
        vals = frame.set_index("uid")["value"].reindex(s_uids).to_numpy(np.float64)
        summ = summarize_clusters(cl, s_texts, s_labels, Xs, vals, classes=loaded.classes)
        cid = save_clusters(ws, ds_id, cl, embedding_id=emb_id, summaries=summ, job_id=getattr(args, "job", None))
        ws.update_run(cid, result={"values_run_id": values_run.id, **prelim})
    timings["cluster"] = time.perf_counter() - t0

    to_embed = int((cache.lookup([embed.text_key(t) for t in texts]) < 0).sum())
    estimates = first_run.estimate_rest(timings, sample=size, rows=n, to_embed=to_embed,
                                        embedded_in_sample=uncached)
    print(f"preliminary: {size:,} of {n:,} rows valued ({called(ws, values_run)}); the rest in about "
          f"{sum(estimates.values()):.0f} s", file=sys.stderr)
    return estimates


def _full(args: argparse.Namespace, ws: Workspace, loaded: common.Loaded, key: str, texts: list[str],
          uids: np.ndarray, labels: list[str], prog: _Slice, *, sampled: bool, valued: bool) -> None:
    """Every row: embed, map and cluster (when sampled: before the values, so the switch is at once), value."""
    from core import curation
    from core.cli.value import value_with_progress
    from core.projection import ensure_projection
    from core.selection import cluster_summaries, ensure_clusters

    ds_id = loaded.dataset_id
    job_id = getattr(args, "job", None)
    st = first_run.state(ws, ds_id) or {}
    est = dict(st.get("estimates") or {})

    def refresh(*left: str) -> None:
        if sampled:
            first_run.set_state(ws, ds_id, finish_at=time.time() + sum(est.get(k, 0.0) for k in left))

    refresh("embed", "project", "cluster", "value")
    emb_id, X = common.get_embeddings(args, ws, loaded, prog.stage(0.0, 0.55, "embedding every row"))
    refresh("project", "cluster", "value")

    def do_map(a: float, b: float) -> None:
        run_id, _ = ensure_projection(ws, ds_id, emb_id, X, list(uids), job_id=job_id, strata=labels,
                                      on_progress=prog.stage(a, b, "map of every row"))

    def do_clusters(a: float, b: float) -> Any:
        run_id, cl, _ = ensure_clusters(ws, ds_id, X, uids, embedding_id=emb_id, seed=args.seed, job_id=job_id,
                                        on_progress=prog.stage(a, b, "clusters of every row"))
        return run_id, cl

    if sampled:
        do_map(0.55, 0.7)
        refresh("cluster", "value")
        cid, cl = do_clusters(0.7, 0.75)
        refresh("value")
        if not valued:
            value_with_progress(args, ws, key, _Slice(prog.parent, prog._map(0.75), prog._map(0.95)))
    else:
        if not valued:
            value_with_progress(args, ws, key, _Slice(prog.parent, prog._map(0.55), prog._map(0.75)))
        cid, cl = do_clusters(0.75, 0.8)
        do_map(0.8, 0.95)
    from core.valuation.store import latest_values

    values, values_run = latest_values(ws, ds_id)
    cluster_summaries(ws, cid, cl, texts=texts, labels=labels, X=X, values=values,
                      values_run_id=None if values_run is None else values_run.id, classes=loaded.classes)
    first_run.set_state(ws, ds_id, phase="done", finish_at=None, finished=time.time())
    prog(0.96, "source classifier: cross-fitted predictions (predicted label)")
    curation.ensure_predictions(ws, emb_id, X, list(uids), labels, loaded.classes)
