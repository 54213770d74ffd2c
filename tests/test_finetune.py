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
from core.finetune import FinetuneResult, length_grouped_batches, train_and_evaluate
from tiny_text import FAST, frame, make_texts, tiny_bert  # noqa: F401 (a fixture)


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


# ----------------------------------------------------------------------------------------------- steps and device


def test_max_steps_trains_exactly_that_many_steps_over_repeated_passes(tiny_bert):
    Xt, yt = make_texts(40)
    Xe, ye = make_texts(16, seed=1)
    res = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert, valid_fraction=0.0,
                             max_steps=7, **FAST)  # 40 rows / batch 8 = 5 steps per pass: 2 passes
    assert res.steps == 7 and res.epochs_run == 2 and res.params["max_steps"] == 7
    again = train_and_evaluate(Xt, yt, Xe, ye, classes=["neg", "pos"], model=tiny_bert, valid_fraction=0.0, **FAST)
    assert again.steps == 5 and again.epochs_run == 1
    assert res.device.startswith("cpu") and res.params["device"] == res.device and res.summary()["device"]
    # the token positions its steps processed: every batch padded to its longest row, the 7 batches it took
    lens = finetune.token_lengths(Xt, model=tiny_bert, max_length=res.params["max_length"])
    rng = np.random.default_rng(res.params["seed"])
    batches = length_grouped_batches(lens, 8, rng) + length_grouped_batches(lens, 8, rng)
    assert res.train_tokens == sum(len(b) * int(lens[b].max()) for b in batches[:7])
    assert res.summary()["train_tokens"] == res.train_tokens
    # and the examples they processed, counted, not derived from steps x batch size (the estimate learns from it)
    assert res.train_examples == sum(len(b) for b in batches[:7]) and res.step_seconds > 0
    assert res.examples_per_second == pytest.approx(res.train_examples / res.step_seconds)


def test_padded_tokens_per_example_follows_the_batching():
    assert finetune.padded_tokens_per_example([12] * 50, 1000, 32) == 12.0  # equal lengths: no padding
    # 90 % short rows, 10 % long: one batch of 32 pads most rows to a long one; 1,600 rows sort into bands
    lengths = [10] * 90 + [60] * 10
    small = finetune.padded_tokens_per_example(lengths, 32, 32)
    large = finetune.padded_tokens_per_example(lengths, 1600, 32)
    assert small == 60.0 and 15.0 <= large <= 16.0  # the mean, plus at most one band of 32 rows padded to 60
    assert finetune.padded_tokens_per_example([], 100, 32) == 0.0


def test_device_selection_cpu_and_mocked_cuda(monkeypatch):
    import torch

    from core import device

    monkeypatch.delenv("WINNOW_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = device.select_device(threads=2)
    assert cpu.name == "cpu" and not cpu.bf16 and cpu.label == "cpu (2 threads)"
    assert device.batch_size_for(cpu, None, max_length=128) == 32 and device.batch_size_for(cpu, 16, max_length=9) == 16
    with pytest.raises(ModelError, match="cuda"):
        device.select_device("cuda")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    gpu = device.select_device()
    assert gpu.name == "cuda" and gpu.bf16 and gpu.label == "cuda (Fake GPU, bf16)"
    assert device.select_device("cpu").name == "cpu"  # asked for: the CPU even with a GPU
    monkeypatch.setenv("WINNOW_DEVICE", "cpu")
    assert device.select_device().name == "cpu"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (80 * 2**30, 140 * 2**30))
    assert device.batch_size_for(gpu, None, max_length=128) == 128  # plenty of memory: the cap
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (1 * 2**30, 140 * 2**30))
    assert device.batch_size_for(gpu, None, max_length=128) == 32  # little: the floor
    assert device.batch_size_for(gpu, 24, max_length=128) == 24  # the caller's choice wins
