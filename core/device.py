"""Where torch work runs: CUDA when `torch.cuda.is_available()`, else the CPU; bf16 autocast and a batch size
from free GPU memory on CUDA. One home for the choice, used by embedding (`core.embed`) and fine-tuning
(`core.finetune`). CPU behaviour is exactly what it was before a GPU path existed: float32, the caller's batch size.

`WINNOW_DEVICE=cpu` (or `cuda`, `cuda:1`) forces a device.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator

from core.errors import ModelError

# Rough activation memory of one training example of a MiniLM/BERT-base-sized encoder per token, in bytes,
# including gradients and optimizer temporaries (bf16 activations); deliberately generous.
_BYTES_PER_TOKEN = 160 * 1024
GPU_BATCH_MIN, GPU_BATCH_MAX = 32, 128


@dataclass(frozen=True)
class Device:
    """The device chosen for one piece of work.

    Attributes:
        name: "cpu" or "cuda" / "cuda:N" (what `torch.device` takes).
        bf16: Autocast to bfloat16 (CUDA with bf16 support only).
        label: For progress lines and run records, e.g. "cuda (NVIDIA H200, bf16)" or "cpu (2 threads)".
    """

    name: str
    bf16: bool = False
    label: str = "cpu"

    @property
    def is_cuda(self) -> bool:
        return self.name.startswith("cuda")


def select_device(prefer: str | None = None, *, threads: int | None = None) -> Device:
    """CUDA when available (or asked for), else CPU.

    Args:
        prefer: "cpu", "cuda", "cuda:N" or None (auto: `WINNOW_DEVICE` if set, else CUDA when available).
        threads: CPU threads, for the label only.

    Raises:
        ModelError: If CUDA is asked for and not available.
    """
    import torch

    want = (prefer or os.environ.get("WINNOW_DEVICE", "") or "auto").strip().lower()
    if want not in ("auto", "cpu") and not want.startswith("cuda"):
        raise ModelError(f"unknown device {want!r}; use cpu, cuda or cuda:N")
    cuda = torch.cuda.is_available()
    if want.startswith("cuda") and not cuda:
        raise ModelError(f"device {want} asked for but torch.cuda.is_available() is False; use cpu")
    if want == "cpu" or not cuda:
        return Device("cpu", False, f"cpu ({threads} thread{'s' if threads != 1 else ''})" if threads else "cpu")
    name = want if want.startswith("cuda") else "cuda"
    idx = int(name.split(":", 1)[1]) if ":" in name else torch.cuda.current_device()
    bf16 = bool(torch.cuda.is_bf16_supported())
    gpu = torch.cuda.get_device_name(idx)
    return Device(name, bf16, f"{name} ({gpu}{', bf16' if bf16 else ''})")


def autocast(device: Device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a CUDA device that supports it; a no-op elsewhere (CPU stays float32)."""
    if not device.bf16:
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16)


def batch_size_for(device: Device, requested: int | None, *, max_length: int, default: int = 32) -> int:
    """The training batch size: the caller's on any device; when None, `default` on CPU and, on CUDA, the
    largest power of two between 32 and 128 whose estimated activations fit in half the free GPU memory."""
    if requested is not None:
        return int(requested)
    if not device.is_cuda:
        return default
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device.name))
    per_example = _BYTES_PER_TOKEN * max(8, int(max_length)) // (2 if device.bf16 else 1)
    fit = int(0.5 * free // max(per_example, 1))
    b = GPU_BATCH_MIN
    while b * 2 <= min(fit, GPU_BATCH_MAX):
        b *= 2
    return b


@contextlib.contextmanager
def seeded(device: Device, seed: int) -> Iterator[None]:
    """Seed torch (CPU and the CUDA device) without leaking into the caller's RNG state."""
    import torch

    devices = [torch.device(device.name).index or 0] if device.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
