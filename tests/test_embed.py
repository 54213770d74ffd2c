"""core.embed: pooling, normalisation, truncation, the disk cache, workspace artefacts and model errors.

A tiny random BERT (hidden 32, 2 layers, a 60-word vocabulary) is built once in a temp folder, so the real Encoder
code runs in milliseconds; one test runs the packaged MiniLM on 20 texts.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from core import embed
from core.errors import DataError, ModelError, WinnowWarning

WORDS = ("the a movie film is was great good bad awful plot acting story fun boring love hate it this that and "
         "but not very really i you we they loved hated long short funny sad happy".split())
WINDOW = 16  # the tiny tokenizer's model_max_length


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A random 2-layer BERT with a word-level vocabulary, saved with save_pretrained."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz.,!?"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=WINDOW)
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).eval().save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert) -> embed.Encoder:
    return embed.Encoder(tiny_bert)


TEXTS = ["the movie was great", "i hated it", "a very very long and really boring plot but the acting was fun",
         "good", "this film is not bad", "they loved the story"]


def test_spec_window_and_key(tiny_bert, tmp_path):
    spec = embed.resolve_model(tiny_bert)
    assert spec.max_length == WINDOW == embed.model_window(tiny_bert)
    assert spec.dim == 32 and spec.precision == "float32"
    assert spec.key == embed.resolve_model(tiny_bert).key  # stable
    assert embed.resolve_model(tiny_bert, "int8").key != spec.key
    assert embed.resolve_model(f"{tiny_bert}:int8").precision == "int8"
    # sentence-transformers' max_seq_length wins when present, and changes the key
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bert, copy)
    (copy / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8, "do_lower_case": False}))
    assert embed.model_window(str(copy)) == 8
    short = embed.resolve_model(tiny_bert, max_length=8)
    assert short.max_length == 8 and short.key != spec.key


def test_encode_shape_dtype_and_unit_norm(tiny_encoder):
    X = tiny_encoder.encode(TEXTS, batch_size=4)
    assert X.shape == (len(TEXTS), 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert tiny_encoder.encode([]).shape == (0, 32)


def test_padding_does_not_change_a_vector(tiny_encoder):
    alone = tiny_encoder.encode(["good"])[0]
    padded = tiny_encoder.encode(["good", TEXTS[2]], batch_size=2)[0]  # batched with a long text: 12 pad tokens
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_order_is_kept_whatever_the_batching(tiny_encoder):
    X = tiny_encoder.encode(TEXTS, batch_size=3)
    one_by_one = np.stack([tiny_encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(X, one_by_one, atol=1e-5)


def test_mean_pooling_matches_a_plain_loop(tiny_bert, tiny_encoder):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert).eval()
    b = tok(TEXTS, padding=True, truncation=True, max_length=WINDOW, return_tensors="pt")
    with torch.inference_mode():
        h = model(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1).numpy()
    np.testing.assert_allclose(tiny_encoder.encode(TEXTS), ref, atol=1e-5)


def test_truncation_is_reported(tiny_encoder):
    long = " ".join(["boring"] * 40)
    with pytest.warns(WinnowWarning, match=r"1 texts are longer than the model's 16-token window and were "
                                           r"truncated \(rows 1\)"):
        X = tiny_encoder.encode(["good", long])
    assert tiny_encoder.last_truncated == 1 and tiny_encoder.last_truncated_rows == [1]
    assert tiny_encoder.last_lengths[1] == 42  # [CLS] + 40 + [SEP], counted before truncation
    # the vector is that of the first 14 words
    np.testing.assert_allclose(X[1], tiny_encoder.encode([" ".join(["boring"] * 14)])[0], atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_encoder.encode(["good"])  # nothing to report
    assert tiny_encoder.last_truncated == 0


def test_threads_follow_winnow_threads(tiny_bert, monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("WINNOW_THREADS", "1")
    try:
        assert embed.Encoder(tiny_bert).threads == 1
    finally:
        torch.set_num_threads(before)


def test_non_string_text_is_a_data_error(tiny_encoder):
    with pytest.raises(DataError, match=r"1 texts are not strings \(rows 1"):
        tiny_encoder.encode(["good", None])  # type: ignore[list-item]


class _Counting:
    """Wraps Encoder to count how many models are loaded and how many texts are embedded."""

    loads = 0
    texts = 0

    def __init__(self, monkeypatch):
        real = embed.Encoder
        counter = self

        class Counting(real):  # type: ignore[misc, valid-type]
            def __init__(self, *a, **k):
                counter.loads += 1
                super().__init__(*a, **k)

            def encode(self, texts, *a, **k):
                counter.texts += len(texts)
                return super().encode(texts, *a, **k)

        monkeypatch.setattr(embed, "Encoder", Counting)


def test_cache_hit_loads_no_model_and_a_grown_dataset_embeds_only_new_texts(tiny_bert, tiny_encoder, tmp_path,
                                                                          monkeypatch):
    count = _Counting(monkeypatch)
    X1 = embed.embed_texts(TEXTS[:4], model=tiny_bert, cache_dir=tmp_path)
    assert (count.loads, count.texts) == (1, 4)
    X2 = embed.embed_texts(TEXTS[:4], model=tiny_bert, cache_dir=tmp_path)
    assert (count.loads, count.texts) == (1, 4)  # hit: no model loaded
    np.testing.assert_array_equal(X1, X2)
    grown = TEXTS[:4] + TEXTS[4:] + [TEXTS[0]]  # 2 new texts and a duplicate
    X3 = embed.embed_texts(grown, model=tiny_bert, cache_dir=tmp_path)
    assert (count.loads, count.texts) == (2, 6)  # only the 2 new texts were embedded
    np.testing.assert_allclose(X3, tiny_encoder.encode(grown), atol=1e-5)
    assert (tmp_path / embed.resolve_model(tiny_bert).key).is_dir()
    # another precision is another cache
    embed.embed_texts(TEXTS[:1], model=tiny_bert, cache_dir=tmp_path, precision="int8")
    assert count.texts == 7


def test_cached_texts_still_report_truncation(tiny_bert, tmp_path):
    texts = ["good", " ".join(["fun"] * 30)]
    with pytest.warns(WinnowWarning, match=r"rows 1\)"):
        embed.embed_texts(texts, model=tiny_bert, cache_dir=tmp_path)
    with pytest.warns(WinnowWarning, match=r"1 texts are longer .* \(rows 0\)"):
        embed.embed_texts(texts[::-1], model=tiny_bert, cache_dir=tmp_path)


def test_progress_reaches_one(tiny_bert, tmp_path):
    seen: list[float] = []
    embed.embed_texts(TEXTS, model=tiny_bert, cache_dir=tmp_path, batch_size=2,
                      on_progress=lambda f, m, v: seen.append(f))
    assert seen[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in seen) and seen == sorted(seen)


def test_cache_shards_from_two_writers_and_compaction(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    a, b = embed.EmbeddingCache(tmp_path, "k"), embed.EmbeddingCache(tmp_path, "k")  # two processes, say
    ka = [embed.text_key(f"a{i}") for i in range(5)]
    kb = [embed.text_key(f"b{i}") for i in range(3)]
    Xa, Xb = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    a.add(ka, np.arange(5), Xa)
    b.add(kb, np.arange(3), Xb)
    fresh = embed.EmbeddingCache(tmp_path, "k")
    assert len(fresh) == 8
    flat = fresh.lookup(ka + kb + [embed.text_key("nope")])
    assert (flat[:8] >= 0).all() and flat[8] == -1
    X, L = fresh.gather(flat[:8], 4)
    np.testing.assert_array_equal(X, np.vstack([Xa, Xb]))
    np.testing.assert_array_equal(L, [0, 1, 2, 3, 4, 0, 1, 2])
    monkeypatch.setattr(embed, "_MAX_SHARDS", 3)
    for i in range(2):  # 4 shards > 3: merged into one
        fresh.add([embed.text_key(f"c{i}")], np.array([1]), Xa[:1])
    assert len(list((tmp_path / "k").glob("shard-*.npz"))) == 1
    again = embed.EmbeddingCache(tmp_path, "k")
    assert len(again) == 10 and not list((tmp_path / "k").glob(".tmp-*"))
    np.testing.assert_array_equal(again.gather(again.lookup(kb), 4)[0], Xb)


def test_a_corrupt_shard_is_ignored_with_a_warning(tmp_path):
    c = embed.EmbeddingCache(tmp_path, "k")
    c.add([embed.text_key("x")], np.array([3]), np.ones((1, 4), np.float32))
    (tmp_path / "k" / "shard-0-bad.npz").write_bytes(b"not a zip")
    with pytest.warns(WinnowWarning, match="unreadable embedding cache file"):
        again = embed.EmbeddingCache(tmp_path, "k")
    assert len(again) == 1


def test_nan_vectors_raise_and_are_not_cached(tiny_bert, tmp_path, monkeypatch):
    real = embed.Encoder.encode

    def nan_encode(self, texts, *a, **k):
        X = real(self, texts, *a, **k)
        X[0] = np.nan
        return X

    monkeypatch.setattr(embed.Encoder, "encode", nan_encode)
    with pytest.raises(ModelError, match=r"NaN/inf vectors for 1 texts"):
        embed.embed_texts(TEXTS[:2], model=tiny_bert, cache_dir=tmp_path)
    assert not list(tmp_path.rglob("shard-*.npz"))


def test_unknown_models_are_clear_model_errors(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match=r"model folder /no/such/model does not exist; pass a local model folder"):
        embed.Encoder("/no/such/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"has no config.json"):
        embed.resolve_model(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    msg = (r"model nobody/no-such-model-xyz not found locally and the hub is offline \(HF_HUB_OFFLINE=1\); "
           r"pass a local folder with --model")
    with pytest.raises(ModelError, match=msg):
        embed.embed_texts(["hi"], model="nobody/no-such-model-xyz", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="unknown precision 'fp16'"):
        embed.resolve_model(None, "fp16")


def test_int8_path_runs_and_stays_close(tiny_bert, tiny_encoder):
    fast = embed.Encoder(tiny_bert, precision="int8")
    X = fast.encode(TEXTS)
    assert X.shape == (len(TEXTS), 32) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert (X * tiny_encoder.encode(TEXTS)).sum(1).min() > 0.9


def test_ensure_embeddings_stores_once_and_reads_back(ws, tiny_bert, monkeypatch):
    count = _Counting(monkeypatch)
    texts = TEXTS + [" ".join(["sad"] * 20)]
    d1, d2 = (ws.register_dataset(name=f"d{i}", source="test", fingerprint=f"fp{i}", n_rows=len(texts),
                                  classes=["a", "b"], text_col="text", label_col="label", meta={}) for i in (1, 2))
    with pytest.warns(WinnowWarning, match=r"rows 6\)"):
        emb_id, X = embed.ensure_embeddings(ws, d1, texts, model=tiny_bert)
    assert X.shape == (len(texts), 32) and count.loads == 1
    spec = embed.resolve_model(tiny_bert)
    rec = ws.embedding(d1, spec.key)
    assert rec is not None and rec.id == emb_id and rec.n_rows == len(texts) and rec.dim == 32
    assert rec.relpath == f"embeddings/{d1}-{spec.key}.npy" and (ws.path / rec.relpath).is_file()
    assert rec.meta["truncated"] == 1 and rec.meta["truncated_rows"] == [6]
    assert list((ws.path / "cache" / "embeddings").iterdir())  # the text cache lives in the workspace
    with pytest.warns(WinnowWarning, match=r"rows 6\)"):  # still reported, from the record
        emb_id2, X2 = embed.ensure_embeddings(ws, d1, texts, model=tiny_bert)
    assert emb_id2 == emb_id and count.loads == 1
    np.testing.assert_array_equal(X, X2)
    # another dataset with the same texts: a new artefact, but every vector from the cache
    with pytest.warns(WinnowWarning, match=r"rows 6\)"):
        emb_id3, X3 = embed.ensure_embeddings(ws, d2, texts, model=tiny_bert)
    assert emb_id3 != emb_id and count.loads == 1
    np.testing.assert_array_equal(X, X3)


@pytest.mark.slow
def test_packaged_minilm_on_twenty_texts():
    texts = ["I love this movie", "This film is wonderful", "The stock market fell sharply today",
             "What a terrible, boring film", "Driverless cars scare me", "I can't wait to ride in a self-driving car",
             *(f"Sentence number {i} about nothing in particular" for i in range(14))]
    enc = embed.Encoder()
    assert enc.max_length == 256 == embed.model_window(embed.DEFAULT_MODEL) and enc.key.startswith(embed.DEFAULT_MODEL)
    assert Path(embed.default_model_path()).is_dir()
    X = enc.encode(texts)
    assert X.shape == (20, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    S = X @ X.T
    assert S[0, 1] > 0.5 > S[0, 2]  # similar sentences are close, unrelated ones are not
    assert S[4, 5] > S[4, 2]
    fast = embed.Encoder(precision="int8").encode(texts)  # the benchmark measures it properly; this is a smoke test
    assert (fast * X).sum(1).min() > 0.98


def test_encoder_device_is_cpu_without_cuda_and_int8_stays_on_cpu(tiny_bert, monkeypatch):
    import torch

    monkeypatch.delenv("WINNOW_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    enc = embed.Encoder(tiny_bert)
    assert enc.device.name == "cpu" and next(enc.model.parameters()).device.type == "cpu"
    seen: list[str] = []
    enc.encode(["a b", "c"], on_progress=lambda f, m, _: seen.append(m))
    assert seen[-1] == "2/2 texts"  # no device note on the CPU path: its output is unchanged
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU is there, but int8 kernels are CPU only
    assert embed.Encoder(tiny_bert, precision="int8").device.name == "cpu"


def test_a_dask_cluster_embeds_exactly_like_a_local_run(tiny_bert, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(1, 12))) for _ in range(40)]
    texts += [texts[0], " ".join(["boring"] * 30)]  # a duplicate and a truncated text
    monkeypatch.setattr(embed, "_FLUSH_EVERY", 7)  # 6 shards over 2 workers
    monkeypatch.setattr(embed, "_WORKER_ENCODERS", {})
    for d in ("local", "dask", "env"):  # the same 5 texts cached beforehand: only the rest is embedded
        embed.embed_texts(texts[:5], model=tiny_bert, cache_dir=tmp_path / d)
    with pytest.warns(WinnowWarning, match=r"rows 41\)"):
        local = embed.embed_texts(texts, model=tiny_bert, cache_dir=tmp_path / "local", batch_size=4)
    count = _Counting(monkeypatch)
    seen: list[tuple[float, str]] = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        with pytest.warns(WinnowWarning, match=r"rows 41\)"):  # truncation is still reported, from the cache
            remote = embed.embed_texts(texts, model=tiny_bert, cache_dir=tmp_path / "dask", batch_size=4,
                                       scheduler=c.scheduler_address, on_progress=lambda f, m, _: seen.append((f, m)))
        monkeypatch.setenv("WINNOW_DASK_SCHEDULER", c.scheduler_address)
        with pytest.warns(WinnowWarning):
            env = embed.embed_texts(texts, model=tiny_bert, cache_dir=tmp_path / "env", batch_size=4)
    np.testing.assert_array_equal(remote, local)  # bit for bit
    np.testing.assert_array_equal(env, local)
    distinct_new = len(set(texts)) - 5
    assert count.texts == 2 * distinct_new  # each uncached text embedded once per run, never the cached ones
    assert 1 <= count.loads <= 2  # one model per worker, not one per shard
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(m.endswith("texts on 2 Dask workers") for _, m in seen)
    monkeypatch.delenv("WINNOW_DASK_SCHEDULER")
    with pytest.warns(WinnowWarning, match=r"rows 41\)"):
        again = embed.embed_texts(texts, model=tiny_bert, cache_dir=tmp_path / "dask")  # the cluster filled the cache
    assert count.loads <= 2 and count.texts == 2 * distinct_new
    np.testing.assert_array_equal(again, local)


def test_an_unreachable_scheduler_is_a_model_error(tiny_bert, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(ModelError, match=r"cannot reach the Dask scheduler at tcp://127.0.0.1:9 .*--scheduler"):
            embed.embed_texts(["good"], model=tiny_bert, cache_dir=tmp_path, scheduler="tcp://127.0.0.1:9")


def test_ensure_embeddings_hands_out_a_read_only_memory_map(ws, tiny_bert):
    """Bounded memory: the N x d matrix a step gets is mapped from the workspace file, computed or not."""
    ds = ws.register_dataset(name="d", source="test", fingerprint="fp", n_rows=len(TEXTS), classes=["a", "b"],
                             text_col="text", label_col="label", meta={})
    _, fresh = embed.ensure_embeddings(ws, ds, TEXTS, model=tiny_bert)
    _, again = embed.ensure_embeddings(ws, ds, TEXTS, model=tiny_bert)
    for X in (fresh, again):
        assert isinstance(X, np.memmap) and X.dtype == np.float32 and not X.flags.writeable
        assert Path(X.filename) == ws.path / ws.embedding(ds, embed.resolve_model(tiny_bert).key).relpath
    np.testing.assert_array_equal(fresh, embed.embed_texts(TEXTS, model=tiny_bert, cache_dir=ws.path / "cache" /
                                                           "embeddings"))


def test_cli_embed_with_scheduler_fills_the_workspace_like_a_local_run(tiny_bert, tmp_path, monkeypatch, capsys):
    """`python -m core embed DATA --scheduler ADDRESS`: the stored embeddings equal a local run's, bit for bit."""
    distributed = pytest.importorskip("distributed")
    import pandas as pd

    from core.__main__ import main

    monkeypatch.setattr(embed, "_WORKER_ENCODERS", {})
    monkeypatch.setattr(embed, "_FLUSH_EVERY", 5)
    data = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS * 3 + ["the plot was fun"], "label": (["pos", "neg"] * 10)[:19]}).to_csv(data,
                                                                                                       index=False)
    assert main(["--workspace", str(tmp_path / "local"), "embed", str(data), "--model", tiny_bert]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        assert main(["--workspace", str(tmp_path / "dask"), "embed", str(data), "--model", tiny_bert,
                     "--scheduler", c.scheduler_address]) == 0
    assert "embedding 1: 19 x 32" in capsys.readouterr().out
    key = embed.resolve_model(tiny_bert).key
    local, remote = (np.load(tmp_path / w / "embeddings" / f"1-{key}.npy") for w in ("local", "dask"))
    np.testing.assert_array_equal(remote, local)
    assert embed._WORKER_ENCODERS and all(where for where, _ in embed._WORKER_ENCODERS)  # loaded on the workers
