"""Patches of faster-whisper's internals, in one room: applied explicitly (`apply()`) when the model
service starts (`SpeechModels`); each checks that faster-whisper still needs it, and
tests/lib/models/test_faster_whisper_compat.py says whether upstream still does.

1. `SileroVADModel.__call__` frames the whole padded audio at once for silero (every 512-sample
   frame with the 64 samples before it: a second copy of the audio, 576/512 of it, beside the padded
   one), then runs the ONNX session over blocks of 10000 frames, whose buffers hold ~180 MB more. An
   85-minute talk (311 MB as float32) peaked at +860-899 MB beyond its waveform in one VAD pass.
   The patch frames one block of `BLOCK_FRAMES` at a time and carries silero's state between
   blocks, as upstream does between its own: silero hears frame after frame, so the probabilities
   are the same (the test compares them with upstream's). The same pass peaked at +368-379 MB with
   the same regions; on 30 minutes of audio (109 MB) the call alone held +77 MB beyond its input
   where upstream's held +356 MB. It also leaves its input as it found it: upstream zeroes the last
   frame's last 64 samples in the caller's array and hears that frame so; the patch hears it the
   same way, in its own copy of that frame.
"""

from __future__ import annotations

import inspect
import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TESTED_WITH = {"faster-whisper": "1.2.1"}
BLOCK_FRAMES = 2_000  # 64 s of audio per session call (upstream: 10000)
_lock = threading.Lock()
_applied: dict[str, bool] = {}


def vad_frames_whole_audio() -> bool:
    """Whether faster-whisper's `SileroVADModel.__call__` still builds the framed copy of the whole
    audio (the concatenation of every frame's context with the frames) before its blocks."""
    from faster_whisper.vad import SileroVADModel

    call = getattr(SileroVADModel.__call__, "_chaffee_original", SileroVADModel.__call__)
    try:
        source = inspect.getsource(call)
    except (OSError, TypeError):  # no source to read (a frozen install): leave upstream as it is
        return False
    return "np.concatenate([context, batched_audio], 1)" in source and "encoder_batch_size = 10000" in source


def tested_version() -> bool:
    """Whether this faster-whisper is the one the patches were written and tested for (the patch
    relies on silero's inputs and state as 1.2.1 ships them); another leaves upstream as it is."""
    from importlib.metadata import version

    found = version("faster-whisper")
    if found != TESTED_WITH["faster-whisper"]:
        log.warning("faster-whisper %s: its VAD is left unpatched (tested with %s); "
                    "tests/lib/models/test_faster_whisper_compat.py says whether it still needs the patch",
                    found, TESTED_WITH["faster-whisper"])
        return False
    return True


def apply() -> dict[str, bool]:
    """Apply the patches still needed (idempotent, thread-safe); {patch: applied now or before}."""
    with _lock:
        if not _applied:
            from faster_whisper.vad import SileroVADModel

            _applied["vad_blockwise"] = tested_version() and vad_frames_whole_audio()
            if _applied["vad_blockwise"]:
                original = SileroVADModel.__call__
                blockwise_silero_call._chaffee_original = original  # type: ignore[attr-defined]
                SileroVADModel.__call__ = blockwise_silero_call
            log.debug("faster-whisper patches: %s", _applied)
        return dict(_applied)


def blockwise_silero_call(self: Any, audio: np.ndarray, num_samples: int = 512, context_size_samples: int = 64) -> np.ndarray:
    """silero's speech probability of every `num_samples` frame of `audio` (a multiple of it), each
    frame heard with the `context_size_samples` before it, one block of frames framed at a time."""
    assert audio.ndim == 1, "Input should be a 1D array"
    assert audio.shape[0] % num_samples == 0, "Input size should be a multiple of num_samples"
    frames = audio.reshape(-1, num_samples)  # a view
    n, size = frames.shape[0], BLOCK_FRAMES
    h = np.zeros((1, 1, 128), dtype="float32")
    c = np.zeros((1, 1, 128), dtype="float32")
    outputs = []
    for i in range(0, n, size):
        block = frames[i : i + size]
        framed = np.empty((block.shape[0], context_size_samples + num_samples), dtype="float32")
        framed[:, context_size_samples:] = block
        framed[0, :context_size_samples] = frames[i - 1, -context_size_samples:] if i else 0.0
        framed[1:, :context_size_samples] = block[:-1, -context_size_samples:]
        if i + size >= n:  # upstream hears the last frame with its own last samples zeroed
            framed[-1, -context_size_samples:] = 0.0
        output, h, c = self.session.run(None, {"input": framed, "h": h, "c": c})
        outputs.append(output)
    return np.concatenate(outputs, axis=0)
