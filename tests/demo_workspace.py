"""A small demo workspace for the page and browser tests: demo tweets plus one hostile row, fake embeddings,
knn-shapley values, a map projection and the source classifier's predictions."""
from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.workspace import Workspace

HOSTILE = "<script>alert(1)</script> ![x](http://example.com/x.png) see [link](http://x) **bold**"
DIM = 64


def fake_embed(texts: list[str], dim: int = DIM) -> np.ndarray:
    """Hashed bag of words, L2-normalised: deterministic, instant, and texts sharing words land close."""
    X = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()) or ["empty"]:
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            X[i, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-6)
    return X


def build_workspace(path: Path, *, n: int | None = 300, values: bool = True, projection: str = "auto") -> dict:
    """A workspace with an active demo sample (+ the hostile row), embeddings, a values run and a projection.

    Args:
        n: Demo rows (a stratified sample); None for all 38,158.
        projection: The map's method ("auto": PCA below 500 rows, else UMAP).
    """
    from core import curation, data
    from core.projection import ensure_projection

    ws = Workspace(path)
    sample = data.open_dataset(ws, "demo", limit=n)
    df = pd.DataFrame({"text": sample.ds["text"], "label": sample.ds["label"]})
    # one label conflict for the Data page to show, whatever rows the seeded sample holds: a text of the first class
    # again under another label (the demo's own conflicts are rare in a small sample)
    other = int(np.flatnonzero(df["label"].to_numpy() != df["label"].iloc[0])[0])
    df.loc[other, "text"] = df["text"].iloc[0]
    df = pd.concat([pd.DataFrame({"text": [HOSTILE], "label": [df["label"].iloc[0]]}), df], ignore_index=True)
    csv = path / "uploads" / "demo_sample.jsonl"
    csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_json(csv, orient="records", lines=True, force_ascii=False)
    loaded = data.open_dataset(ws, str(csv))
    ws.set_setting("active_dataset", loaded.dataset_id)
    ds_id = loaded.dataset_id
    uids = [str(u) for u in loaded.ds["uid"]]
    texts = [str(t) for t in loaded.ds["text"]]
    labels = [str(v) for v in loaded.ds["label"]]
    X = fake_embed(texts)
    rel = f"embeddings/{ds_id}/fake.npy"
    ws.write_array(rel, X)
    emb_id = ws.register_embedding(dataset_id=ds_id, model="fake-hash-64", dim=DIM, n_rows=len(X), relpath=rel)
    out = {"ws": ws, "dataset_id": ds_id, "embedding_id": emb_id, "uids": uids, "texts": texts, "labels": labels,
           "hostile_uid": uids[texts.index(HOSTILE)]}
    proj_id, _ = ensure_projection(ws, ds_id, emb_id, X, uids, method=projection)
    curation.ensure_predictions(ws, emb_id, X, uids, labels, loaded.classes)
    out["projection_id"] = proj_id
    if values:
        from core import runs
        from core.valuation import store
        from core.valuation.validation import value_dataset

        y = data.label_codes(loaded.ds, loaded.classes)
        v = value_dataset(X, y, np.asarray(uids), method="knn_shapley", seed=0, classes=loaded.classes)
        lowered = v.values.copy()
        lowered[v.uids == out["hostile_uid"]] = float(v.values.min()) - 0.01  # first card on Inspect
        with runs.recorded(ws, "values", dataset_id=ds_id, method=v.method, params=v.params,
                           embedding_id=emb_id) as run:
            store.save_values(ws, run.id, replace(v, values=lowered))
            run.done(seconds=v.seconds)
        out["values_id"] = run.id
    return out
