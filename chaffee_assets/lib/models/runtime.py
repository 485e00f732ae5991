"""Where and how the models run, resolved once and handed to every model (faster-whisper's options
objects are the model): the device, CTranslate2's compute type, the model cache and the CPU
threads. No model resolves them again.

    runtime = ModelRuntime.resolve("auto", cache_dir=Path("~/.cache/chaffee_assets/models"))
    Transcriber(AsrOptions(model="tiny.en"), runtime); EcapaEmbedder(runtime); TextEmbedder("minilm", runtime)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from chaffee_assets.lib.errors import DeviceUnavailable

log = logging.getLogger(__name__)

_COMPUTE_TYPES = {"cuda": "float16", "cpu": "int8"}

# On a CPU a large batch costs time and memory and buys nothing: the activations of many inputs at
# once fall out of the caches, and every input is padded to the batch's longest. Measured with
# bench/cpu_batches.py (2-core CPU, medians, seconds and peak memory growth): ECAPA, 100 windows of
# 2 s: batch 64 32.6 s +2010 MB, 16 12.0 s +533 MB, 4 9.5 s +102 MB; minilm, 256 passages of 40-200
# words: batch 256 26.9 s +977 MB, 16 8.6 s +109 MB. So on a CPU these models compute in batches of
# at most these; on a GPU the configured sizes hold (batches pay there). Whisper's batched pipeline
# is fastest at its default 8 on the CPU too (4: 1.24x the time, 1: 1.83x), and is not held.
CPU_BATCH = {"ecapa": 4, "text": 16}


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str = "auto") -> tuple[str, str]:
    """Map the `DEVICE` setting to (device, compute_type).

    `auto` picks `("cuda", "float16")` when torch sees a GPU, else `("cpu", "int8")`. Asking for
    `cuda` on a machine without one is an error rather than a silent fallback.
    """
    if device == "auto":
        resolved = "cuda" if cuda_available() else "cpu"
    elif device in _COMPUTE_TYPES:
        resolved = device
        if device == "cuda" and not cuda_available():
            raise DeviceUnavailable("DEVICE=cuda but torch sees no CUDA device; use DEVICE=auto or cpu")
    else:
        raise DeviceUnavailable(f"unknown device {device!r}: expected auto, cpu or cuda")
    log.debug("device %s -> %s (%s)", device, resolved, _COMPUTE_TYPES[resolved])
    return resolved, _COMPUTE_TYPES[resolved]


@dataclass(frozen=True)
class ModelRuntime:
    device: str  # cpu | cuda
    compute_type: str  # CTranslate2's: int8 on cpu, float16 on cuda
    cache_dir: Path  # where packaged models that need assembling are assembled (lib.models.registry)
    threads: int = 0  # CPU threads per model (torch intra-op, CTranslate2); 0: the library's default

    @classmethod
    def resolve(cls, device: str, cache_dir: str | Path, threads: int = 0) -> ModelRuntime:
        resolved, compute_type = resolve_device(device)
        return cls(resolved, compute_type, Path(cache_dir).expanduser(), threads if resolved == "cpu" else 0)

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def batch(self, model: str, configured: int) -> int:
        """The batch `model` computes in: `configured`, held to `CPU_BATCH` on a CPU."""
        return configured if self.on_cuda or model not in CPU_BATCH else max(1, min(configured, CPU_BATCH[model]))
