"""A synthetic workspace for the large-map tests and benchmarks: N rows with map coordinates, values and labels.

The map needs coordinates, values and labels, not vectors: the workspace holds a tiny 2-d "embedding" (the
coordinates themselves, so the Map page finds an embedding record), a projection run, and a knn-shapley-named values
run. Coordinates are seeded Gaussian blobs; each blob has a majority label (with seeded flips) and values that are
lower where labels were flipped. Everything is synthetic and labelled so ("synthetic-2d" embedding model).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from core.workspace import Workspace

CLASSES = ("negative", "neutral", "positive", "mixed")


def synthetic_points(n: int, *, seed: int = 0, blobs: int = 12) -> dict[str, np.ndarray]:
    """x, y (float32), label (object), value (float64) for n seeded points."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(blobs, 2))
    scale = rng.uniform(0.4, 1.6, size=blobs)
    blob = rng.integers(0, blobs, n)
    xy = centres[blob] + rng.normal(size=(n, 2)) * scale[blob, None]
    major = np.arange(blobs) % len(CLASSES)
    flip = rng.random(n) < 0.15
    label_code = np.where(flip, rng.integers(0, len(CLASSES), n), major[blob])
    value = rng.normal(0.0, 1e-3, n) - 3e-3 * (label_code != major[blob])
    return {"x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32),
            "label": np.asarray(CLASSES, dtype=object)[label_code], "value": value}


def build_synthetic_workspace(path: Path, n: int, *, seed: int = 0) -> dict:
    """A workspace whose active dataset has n synthetic rows, a 2-d embedding, a projection and a values run.

    Returns: {"ws", "dataset_id", "uids", "x", "y", "label", "value"} (arrays in the dataset's row order).
    """
    from core import data, runs

    ws = Workspace(path)
    pts = synthetic_points(n, seed=seed)
    df = pd.DataFrame({"text": [f"synthetic row {i}" for i in range(n)], "label": pts["label"]})
    src = path / "uploads" / "synthetic.csv"
    src.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(src, index=False)
    loaded = data.open_dataset(ws, str(src))
    ds_id = loaded.dataset_id
    ws.set_setting("active_dataset", ds_id)
    uids = [str(u) for u in loaded.ds["uid"]]
    texts = [str(t) for t in loaded.ds["text"]]
    order = np.asarray([int(t.rsplit(" ", 1)[1]) for t in texts])  # the dataset's row -> the generated point
    x, y = pts["x"][order], pts["y"][order]
    label, value = pts["label"][order], pts["value"][order]
    X = np.column_stack([x, y]).astype(np.float32)
    rel = f"embeddings/{ds_id}/synthetic.npy"
    ws.write_array(rel, X)
    emb_id = ws.register_embedding(dataset_id=ds_id, model="synthetic-2d", dim=2, n_rows=n, relpath=rel)
    with runs.recorded(ws, "projection", dataset_id=ds_id, method="pca", params={"method": "pca", "synthetic": True},
                       embedding_id=emb_id) as run:
        ws.save_run_frame(run.id, pd.DataFrame({"uid": uids, "x": x, "y": y}))
        run.done({"rows": n})
    with runs.recorded(ws, "values", dataset_id=ds_id, method="knn_shapley", params={"synthetic": True},
                       embedding_id=emb_id) as run:
        ws.save_run_frame(run.id, pd.DataFrame({"uid": uids, "value": value, "stderr": np.full(n, 1e-4),
                                                "count": np.ones(n, dtype=np.int64)}))
        run.done(seconds=0.0)
    return {"ws": ws, "dataset_id": ds_id, "embedding_id": emb_id, "uids": uids, "x": x, "y": y, "label": label,
            "value": value}
