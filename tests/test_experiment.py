"""core.experiment: subset specs resolved from the training pool, compare over seeds, checkpoints and resume."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core import experiment, finetune
from core.errors import DataError
from core.experiment import compare, resolve_subset
from tiny_text import _register, frame, tiny_bert  # noqa: F401 (a fixture)


def test_subsets_resolve_from_the_pool(ws):
    df = frame(50)
    did = _register(ws, df)
    pool = df.iloc[10:].reset_index(drop=True)  # rows u0..u9 play the test rows
    ws.decide(did, ["u12", "u13", "u3"], "remove", reason="noisy")
    assert resolve_subset(ws, did, "full", pool).uids == pool["uid"].tolist()
    cur = resolve_subset(ws, did, "curated", pool).uids
    assert len(cur) == 38 and "u12" not in cur and "u13" not in cur
    r0 = resolve_subset(ws, did, "random:0.5", pool, seed=0).uids
    r1 = resolve_subset(ws, did, "random:0.5", pool, seed=1).uids
    assert len(r0) == len(r1) == 20 and r0 != r1 and r0 == resolve_subset(ws, did, "random:20", pool, seed=0).uids
    sel = ws.create_run("selection", dataset_id=did, method="kmq", status="done")
    ws.save_run_frame(sel, pd.DataFrame({"uid": ["u1", "u20", "u21", "u22"]}))
    assert resolve_subset(ws, did, f"selection:{sel}", pool).uids == ["u20", "u21", "u22"]  # u1 is a test row
    vals = ws.create_run("values", dataset_id=did, method="knn_shapley", status="done")
    ws.save_run_frame(vals, pd.DataFrame({"uid": df["uid"], "value": np.arange(50.0)}))
    assert resolve_subset(ws, did, f"top-value:3:{vals}", pool).uids == ["u47", "u48", "u49"]
    with pytest.raises(DataError, match="unknown subset"):
        experiment.parse_subsets("full,best:3")
    with pytest.raises(DataError, match="exceeds|between"):
        resolve_subset(ws, did, "random:500", pool)
    empty = ws.create_run("selection", dataset_id=did, method="kmq", status="done")
    ws.save_run_frame(empty, pd.DataFrame({"uid": ["u1"]}))
    with pytest.raises(DataError, match="no rows"):
        resolve_subset(ws, did, f"selection:{empty}", pool)


def test_held_out_split_is_stratified_and_excluded(tiny_bert, ws, monkeypatch):
    df = frame(60)
    did = _register(ws, df)
    pool_idx, test_idx = experiment.held_out_split(df["label"].tolist())
    assert len(test_idx) == 12 and not set(pool_idx) & set(test_idx)
    assert (df["label"].iloc[test_idx] == "pos").sum() == 6
    trained_on: list[set[str]] = []
    real = finetune.train_and_evaluate

    def spy(texts, *a, **k):
        trained_on.append(set(texts))
        return real(texts, *a, **k)

    monkeypatch.setattr(finetune, "train_and_evaluate", spy)
    run_id = compare(ws, did, subsets="full", data=df, seeds=1, model=str(tiny_bert), epochs=1, batch_size=8,
                     threads=1)
    assert len(trained_on) == 1 and trained_on[0] <= set(df["text"].iloc[pool_idx])
    assert ws.run(run_id).result["n_test"] == 12


def test_compare_resumes_without_redoing_finished_runs(tiny_bert, ws, monkeypatch):
    df = frame(60)
    did = _register(ws, df)
    calls: list[tuple[int, int]] = []
    real = finetune.train_and_evaluate

    def counting(texts, *a, **k):
        calls.append((len(texts), k["seed"]))
        return real(texts, *a, **k)

    monkeypatch.setattr(finetune, "train_and_evaluate", counting)

    class Killed(Exception):
        pass

    def kill_after_first(fraction: float, message: str) -> None:
        if "finished" in message:  # the first fine-tune has finished and been checkpointed
            raise Killed()

    kw = dict(subsets=["full", "random:0.5"], data=df, seeds=2, model=str(tiny_bert), epochs=1, batch_size=8,
              lr=1e-3, threads=1)
    with pytest.raises(Killed):
        compare(ws, did, on_progress=kill_after_first, **kw)
    assert len(calls) == 1
    (first,) = ws.runs("compare")
    assert first.status == "failed" and list(ws.checkpoints(first.id)) == ["full|0"]

    run_id = compare(ws, did, **kw)
    assert run_id == first.id and len(calls) == 4  # 3 more, not 4
    run = ws.run(run_id)
    assert run.status == "done" and set(ws.checkpoints(run_id)) == {"full|0", "full|1", "random:0.5|0",
                                                                    "random:0.5|1"}
    table = {r["subset"]: r for r in run.result["table"]}
    assert table["full"]["runs"] == 2 and table["full"]["rows"] == 48
    assert table["random:0.5"]["rows"] == 24 and table["random:0.5"]["accuracy_std"] >= 0
    assert len(ws.load_run_frame(run_id)) == 4
    assert len(ws.runs("finetune")) == 4 and all(r.parent_id == run_id for r in ws.runs("finetune"))

    compare(ws, did, **kw)  # a finished experiment is not resumed: a new run trains again
    assert len(calls) == 8


def test_kmq_subset_uses_the_newest_clusters_and_skips_test_rows(ws):
    from core.selection import fit_clusters
    from core.selection.store import save_clusters

    df = frame(60)
    did = _register(ws, df)
    X = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    ws.write_array("artefacts/emb.npy", X)
    emb = ws.register_embedding(dataset_id=did, model="fake", dim=8, n_rows=60, relpath="artefacts/emb.npy")
    save_clusters(ws, did, fit_clusters(X, k=3, uids=df["uid"].tolist(), seed=0), embedding_id=emb)
    pool = df.iloc[10:].reset_index(drop=True)
    a = resolve_subset(ws, did, "kmq:20", pool, seed=0)
    assert len(a.uids) == 20 and set(a.uids) <= set(pool["uid"]) and "k=3" in a.note
    assert a.uids == resolve_subset(ws, did, "kmq:0.4", pool, seed=0).uids


def test_finetune_is_a_leaf_and_selection_never_imports_the_experiment():
    """finetune trains and evaluates; selection receives the train function; only the experiment sits above both."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "core"

    def core_imports(path: Path) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core"):
                names.add(node.module if node.module != "core" else "core." + node.names[0].name)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("core"))
        return names

    assert core_imports(root / "finetune.py") <= {"core.errors", "core.embed"}
    for path in (root / "selection").glob("*.py"):
        assert not {m for m in core_imports(path) if m in ("core.finetune", "core.experiment")}, path.name
