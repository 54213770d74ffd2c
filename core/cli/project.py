"""Sub-command `project`: embed DATA, then UMAP/PCA it to 2-D for the map (kept as a "projection" run)."""
from __future__ import annotations

import argparse
import time

from core import jobs
from core.cli.common import embedding_command, get_embeddings, open_data, progress
from core.data import column as ds_column
from core.runs import called
from core.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    p = embedding_command(
        sub, "project", "2-D map coordinates of DATA's embeddings (UMAP, or PCA for tiny data)",
        "Embed DATA (cached), project the embeddings to 2-D and record the coordinates as a projection run keyed by "
        "the embedding and the parameters; a run with the same key is reused. Also stores the source classifier's "
        "cross-fitted predictions for the map and the Inspect page.")
    g = p.add_argument_group("projection options")
    g.add_argument("--method", choices=("auto", "umap", "pca"), default="auto",
                   help="auto (default): PCA below 500 rows, else UMAP")
    g.add_argument("--n-neighbors", type=int, default=15, help="UMAP neighbourhood size (default 15)")
    g.add_argument("--min-dist", type=float, default=0.1, help="UMAP minimum distance (default 0.1)")
    g.add_argument("--seed", type=int, default=0, help="seed (default 0): the same embeddings and seed give the same map")
    g.add_argument("--max-fit", type=int, default=100_000,
                   help="fit UMAP on at most this many rows and transform the rest (default 100000)")
    g.add_argument("--no-predictions", action="store_true",
                   help="skip the source classifier's predictions (predicted label on the map)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the rows-by-chunk work on this Dask cluster (e.g. tcp://host:8786; default: "
                        "$WINNOW_DASK_SCHEDULER, else here): embedding the uncached texts and, past the sampling "
                        "threshold, the UMAP transform of the rows past --max-fit")
    p.set_defaults(func=cmd_project)


def cmd_project(args: argparse.Namespace, ws: Workspace) -> int:
    from core import curation
    from core.projection import ensure_projection, find_projection

    loaded = open_data(args, ws)
    bar = progress(args, ws, "project")
    t0 = time.time()
    emb_id, X = get_embeddings(args, ws, loaded, bar.stage(0.0, 0.3, "embedding"))
    uids = [str(u) for u in ds_column(loaded.ds, "uid")]
    labels = [str(v) for v in ds_column(loaded.ds, "label")]
    params = dict(method=args.method, n_neighbors=args.n_neighbors, min_dist=args.min_dist, seed=args.seed,
                  max_fit=args.max_fit)
    reused = find_projection(ws, loaded.dataset_id, emb_id, len(uids), **params) is not None
    run_id, coords = ensure_projection(ws, loaded.dataset_id, emb_id, X, uids, job_id=getattr(args, "job", None),
                                       strata=labels, on_progress=bar.stage(0.3, 0.85, "map"),
                                       scheduler=getattr(args, "scheduler", None), **params)
    jobs.attach_run(ws, getattr(args, "job", None), run_id)
    if not args.no_predictions:
        bar(0.86, "source classifier: cross-fitted predictions")
        curation.ensure_predictions(ws, emb_id, X, uids, labels, loaded.classes)
    bar.close(f"map ready ({called(ws, run_id)})")
    print(f"{called(ws, run_id)}{' (reused)' if reused else ''}: {len(uids):,} points, "
          f"{ws.run(run_id).method}, {time.time() - t0:.1f} s")
    return 0
