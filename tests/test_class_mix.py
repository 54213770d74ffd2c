"""A subset that drops a class (or most of it) says so (issue 12 §6)."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from core.data import class_mix_warnings

TOPICS = {"cats": ["cat", "kitten", "purr", "whiskers"], "cars": ["car", "engine", "road", "fuel"],
          "food": ["pizza", "pasta", "cheese", "sauce"], "rain": ["rain", "cloud", "storm", "umbrella"]}


def test_class_mix_warnings():
    full = {"neg": 50, "neu": 10, "pos": 40}
    assert class_mix_warnings(full, {"neg": 25, "neu": 5, "pos": 20}) == []
    w = class_mix_warnings(full, {"neg": 30, "neu": 0, "pos": 20})
    assert len(w) == 1 and "no row of class 'neu'" in w[0] and "10 in the data" in w[0]
    w = class_mix_warnings(full, {"neg": 30, "neu": 2, "pos": 28})
    assert len(w) == 1 and "'neu' falls to 2 rows" in w[0] and "under half its share" in w[0]
    assert class_mix_warnings(full, {}) == []


def _vec(text: str, dim: int = 32) -> np.ndarray:
    v = np.zeros(dim)
    for w in text.split():
        v[int(hashlib.md5(w.encode()).hexdigest(), 16) % dim] += 1.0
    return v / max(np.linalg.norm(v), 1e-9)


def test_the_select_cli_warns_when_a_class_is_dropped(ws, tmp_path, monkeypatch, capsys):
    from core.__main__ import main
    from core.cli import common

    rng = np.random.default_rng(0)
    rows = [{"text": " ".join(rng.choice(words, 4)) + f" {t} number{i}",
             "label": "neutral" if t == "rain" else ("pos" if i % 2 else "neg")}
            for t, words in TOPICS.items() for i in range(30)]
    src = tmp_path / "mix.csv"
    pd.DataFrame(rows).to_csv(src, index=False)

    def fake(args, ws_, loaded, on_progress=None):
        X = np.vstack([_vec(t) for t in loaded.ds["text"]]).astype(np.float32)
        return ws_.register_embedding(dataset_id=loaded.dataset_id, model="fake", dim=32, n_rows=len(X),
                                      relpath="fake.npy"), X

    monkeypatch.setattr(common, "get_embeddings", fake)
    assert main(["--workspace", str(ws.path), "cluster", str(src), "--k", "4"]) == 0
    frame = ws.load_run_frame(ws.latest_run("clusters").id)
    texts = dict(zip(pd.read_csv(src)["text"], pd.read_csv(src)["label"]))
    from core import data

    loaded = data.open_dataset(ws, str(src))
    lab = dict(zip(data.column(loaded.ds, "uid"), data.column(loaded.ds, "label")))
    neutral_clusters = sorted({int(c) for u, c in zip(frame["uid"], frame["cluster"]) if lab[u] == "neutral"})
    weights = ",".join(f"{c}=0" for c in neutral_clusters)
    capsys.readouterr()
    assert main(["--workspace", str(ws.path), "select", str(src), "--strategy", "kmq", "--budget", "40", "--k", "4",
                 "--weights", weights, "--out", str(tmp_path / "s.csv")]) == 0
    err = capsys.readouterr().err
    assert "winnow: warning: the subset has no row of class 'neutral'" in err
    assert texts  # the file was read
