"""Which device and CTranslate2 compute type a model runs on."""

from __future__ import annotations

import logging

from chaffee_assets.lib.errors import DeviceUnavailable

log = logging.getLogger(__name__)

_COMPUTE_TYPES = {"cuda": "float16", "cpu": "int8"}


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
