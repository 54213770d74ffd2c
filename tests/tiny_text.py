"""Tiny text data and a tiny random BERT (hidden 32, 2 layers) that trains in well under a second, for real loops."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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


def _register(ws, df: pd.DataFrame) -> int:
    return ws.register_dataset(name="tiny", source="test", fingerprint=f"fp{len(df)}", n_rows=len(df),
                               classes=sorted(set(df["label"])), text_col="text", label_col="label", meta={})
