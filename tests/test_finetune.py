"""core.finetune: a tiny random BERT (hidden 32, 2 layers) trains in well under a second, so these run real loops."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import finetune
from core.errors import DataError, ModelError
from core.finetune import FinetuneResult, compare, length_grouped_batches, resolve_subset, train_and_evaluate

POS = ["good", "great", "fine", "nice", "superb"]
NEG = ["bad", "awful", "poor", "terrible", "dull"]
FILL = ["the", "a", "movie", "film", "plot", "actor", "is", "was", "very", "and"]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT (hidden 32) with a 30-word vocabulary and its tokenizer, saved to a folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POS, *NEG, *FILL, "neutral"]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab=str(d / "vocab.txt"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)
        BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def make_texts(n: int, seed: int = 0, classes: tuple[str, ...] = ("neg", "pos")) -> tuple[list[str], list[str]]:
    """Sentences whose sentiment word decides the label; lengths vary from 2 to 12 words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        lab = classes[i % len(classes)]
        word = rng.choice(POS if lab == "pos" else NEG if lab == "neg" else ["neutral"])
        fill = list(rng.choice(FILL, size=rng.integers(1, 11)))
        fill.insert(int(rng.integers(0, len(fill) + 1)), str(word))
        texts.append(" ".join(fill))
        labels.append(lab)
    return texts, labels


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    texts, labels = make_texts(n, seed)
    return pd.DataFrame({"uid": [f"u{i}" for i in range(n)], "text": texts, "label": labels})


FAST = {"epochs": 1, "batch_size": 8, "lr": 1e-3, "threads": 1}


# ----------------------------------------------------------------------------------------------- train_and_evaluate


def test_tiny_finetune_runs_end_to_end_and_saves(tiny_bert, tmp_path):
    Xt, yt = make_texts(40)
    Xe, ye = make_texts(16, seed=1)
    seen: list[float] = []
    res = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert, save_dir=tmp_path / "m",
                             on_progress=lambda f, m: seen.append(f), **FAST)
    assert isinstance(res, FinetuneResult)
    assert 0.0 <= res.accuracy <= 1.0 and 0.0 <= res.macro_f1 <= 1.0
    assert res.n_train + res.n_valid == 40 and res.n_valid == 4 and res.n_test == 16
    assert set(res.per_class) == {"neg", "pos"} and sum(s.support for s in res.per_class.values()) == 16
    assert res.loss_curve and all(np.isfinite(loss) for _, loss in res.loss_curve)
    assert res.epochs_run == 1 and len(res.valid_curve) == 1
    assert res.examples_per_second > 0 and res.params["model"] == str(tiny_bert)
    assert seen[-1] == 1.0
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["accuracy"] == res.accuracy and (tmp_path / "m" / "config.json").exists()
    # the saved model reloads with its label names
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tmp_path / "m").id2label == {0: "neg", 1: "pos"}


def test_learns_an_easy_task(tiny_bert):
    Xt, yt = make_texts(160)
    Xe, ye = make_texts(40, seed=1)
    res = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert, epochs=6, batch_size=16,
                             lr=3e-3, threads=1, early_stopping_patience=0)
    assert res.accuracy >= 0.9, res.valid_curve
    assert res.loss_curve[-1][1] < res.loss_curve[0][1]


def test_same_seed_same_result_and_caller_rng_untouched(tiny_bert):
    import torch

    Xt, yt = make_texts(40)
    Xe, ye = make_texts(16, seed=1)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert, seed=3, **FAST)
    after = torch.rand(1)
    b = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert, seed=3, **FAST)
    assert a.loss_curve == b.loss_curve and a.predictions == b.predictions
    assert before == after  # train_and_evaluate forks the torch RNG
    c = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert, seed=4, **FAST)
    assert c.loss_curve != a.loss_curve


def test_early_stopping_keeps_the_best_epoch(tiny_bert):
    Xt, yt = make_texts(60)
    Xe, ye = make_texts(20, seed=1)
    res = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert, epochs=8, batch_size=8,
                             lr=1e-2, threads=1, early_stopping_patience=1)
    accs = [(acc, -loss) for _, loss, acc in res.valid_curve]
    assert res.epochs_run == len(res.valid_curve) <= 8
    assert res.best_epoch == 1 + int(np.argmax([a for a, _ in accs])) or accs[res.best_epoch - 1] == max(accs)
    if res.epochs_run < 8:
        assert res.epochs_run == res.best_epoch + 1


def test_test_labels_absent_from_training_are_named(tiny_bert):
    Xt, yt = make_texts(20)
    Xe, ye = make_texts(9, classes=("neg", "pos", "mixed"))
    with pytest.raises(DataError, match="mixed"):
        train_and_evaluate(Xt, yt, Xe, ye, classes=["mixed", "neg", "pos"], model=tiny_bert, **FAST)


def test_empty_subset_and_unknown_labels(tiny_bert):
    Xe, ye = make_texts(8)
    with pytest.raises(DataError, match="empty"):
        train_and_evaluate([], [], Xe, ye, classes=["neg", "pos"], model=tiny_bert, **FAST)
    with pytest.raises(DataError, match="maybe"):
        train_and_evaluate(["x", "y"], ["neg", "maybe"], Xe, ye, classes=["neg", "pos"], model=tiny_bert, **FAST)


def test_unknown_model_gives_a_clear_error(tmp_path):
    Xt, yt = make_texts(10)
    with pytest.raises(ModelError, match="does not exist"):
        train_and_evaluate(Xt, yt, Xt, yt, classes=["neg", "pos"], model=tmp_path / "no_such_model", **FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        train_and_evaluate(Xt, yt, Xt, yt, classes=["neg", "pos"], model=tmp_path / "empty", **FAST)
    with pytest.raises(ModelError, match="cannot load model"):
        train_and_evaluate(Xt, yt, Xt, yt, classes=["neg", "pos"], model="winnow-test/no-such-model-xyz", **FAST)


def test_length_grouped_batches_cover_every_row_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 60, size=1000)
    batches = length_grouped_batches(lengths, 32, np.random.default_rng(1), mega=10)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    naive = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), len(batches)))
    assert padded < 0.7 * naive


@pytest.mark.slow
def test_real_minilm_tiny_run():
    path = Path(finetune.default_model_path())
    if not (path / "config.json").exists():
        pytest.skip("packaged MiniLM not installed")
    Xt, yt = make_texts(32)
    Xe, ye = make_texts(16, seed=1)
    t0 = time.perf_counter()
    res = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], epochs=1, batch_size=16, max_length=32,
                             valid_fraction=0.0, threads=1)
    assert res.n_train == 32 and res.epochs_run == 1 and res.n_valid == 0
    assert time.perf_counter() - t0 < 60


# ----------------------------------------------------------------------------------------------- subsets and compare


def _register(ws, df: pd.DataFrame) -> int:
    return ws.register_dataset(name="tiny", source="test", fingerprint=f"fp{len(df)}", n_rows=len(df),
                               classes=sorted(set(df["label"])), text_col="text", label_col="label", meta={})


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
        finetune.parse_subsets("full,best:3")
    with pytest.raises(DataError, match="exceeds|between"):
        resolve_subset(ws, did, "random:500", pool)
    empty = ws.create_run("selection", dataset_id=did, method="kmq", status="done")
    ws.save_run_frame(empty, pd.DataFrame({"uid": ["u1"]}))
    with pytest.raises(DataError, match="no rows"):
        resolve_subset(ws, did, f"selection:{empty}", pool)


def test_held_out_split_is_stratified_and_excluded(tiny_bert, ws, monkeypatch):
    df = frame(60)
    did = _register(ws, df)
    pool_idx, test_idx = finetune.held_out_split(df["label"].tolist())
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


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_finetune_and_compare(tiny_bert, tmp_path, capsys):
    from core.__main__ import main

    train, test = frame(40), frame(16, seed=1)
    train.to_csv(tmp_path / "train.csv", index=False)
    test.drop(columns="uid").to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"uid": train["uid"][:20]}).to_csv(tmp_path / "subset.csv", index=False)
    wsdir = str(tmp_path / "ws")
    common = ["--model", str(tiny_bert), "--epochs", "1", "--batch-size", "8", "--threads", "1"]
    assert main(["--workspace", wsdir, "finetune", "--train", str(tmp_path / "train.csv"), "--eval",
                 str(tmp_path / "test.csv"), "--out", str(tmp_path / "run.json"), *common]) == 0
    out = json.loads((tmp_path / "run.json").read_text())
    assert out["n_train"] + out["n_valid"] == 40 and "accuracy" in out and out["run_id"] >= 1
    assert main(["--workspace", wsdir, "finetune", "--data", str(tmp_path / "train.csv"), "--train",
                 str(tmp_path / "subset.csv"), "--eval", str(tmp_path / "test.csv"), "--out",
                 str(tmp_path / "sub.json"), *common]) == 0
    assert json.loads((tmp_path / "sub.json").read_text())["n_train"] + 2 == 20
    assert main(["--workspace", wsdir, "compare", str(tmp_path / "train.csv"), "--eval", str(tmp_path / "test.csv"),
                 "--subsets", "full,random:0.5", "--seeds", "2", "--json", *common]) == 0
    printed = capsys.readouterr().out
    table = json.loads(printed[printed.index("{"):])["table"]
    assert [r["subset"] for r in table] == ["full", "random:0.5"] and all(r["runs"] == 2 for r in table)
    assert main(["--workspace", wsdir, "finetune", "--data", str(tmp_path / "train.csv"), "--train", "best:3",
                 "--eval", str(tmp_path / "test.csv"), *common]) == 2
    assert "winnow: error:" in capsys.readouterr().err


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
