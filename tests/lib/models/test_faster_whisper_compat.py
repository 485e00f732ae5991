"""The patch room of faster-whisper (`lib/models/faster_whisper_compat.py`): whether upstream still
needs each patch, and that the patched call answers what upstream's does, on real silero."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from chaffee_assets.lib.models import faster_whisper_compat as compat
from chaffee_assets.lib.voices import read_audio

FRAMES = 12_000


@pytest.fixture(scope="module")
def long_audio(fixtures_dir) -> np.ndarray:
    """6.4 minutes of real speech (jfk.flac over and over) over a faint noise floor, 12000 whole
    frames: several blocks, and a last frame whose own last samples are not silence."""
    wav = np.tile(read_audio(fixtures_dir / "jfk.flac"), 37)[: FRAMES * 512].astype(np.float32)
    wav += np.random.default_rng(0).normal(0, 1e-3, wav.size).astype(np.float32)
    assert wav.size == FRAMES * 512 and np.all(wav[-64:] != 0)
    return wav


def _upstream():
    from faster_whisper.vad import SileroVADModel

    return getattr(compat.blockwise_silero_call, "_chaffee_original", None) or SileroVADModel.__call__


def _peak_traced(call, *args) -> tuple[np.ndarray, int]:
    tracemalloc.start()  # numpy's buffers are traced; ONNX Runtime's own are not
    try:
        return call(*args), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_upstream_still_frames_the_whole_audio_and_the_patch_is_applied_once():
    """Fails when a faster-whisper release frames blockwise itself: the patch is then dropped."""
    from faster_whisper.vad import SileroVADModel

    assert compat.vad_frames_whole_audio()
    assert compat.apply() == compat.apply() == {"vad_blockwise": True}
    assert SileroVADModel.__call__ is compat.blockwise_silero_call
    assert compat.vad_frames_whole_audio()  # it reads upstream's method, not the patch


def test_the_blockwise_call_hears_what_upstreams_does_without_its_copy_of_the_audio(long_audio, monkeypatch):
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()
    expected, upstream_peak = _peak_traced(_upstream(), model, long_audio.copy())  # upstream writes into its input

    # 2000 (the default) divides the frames, 777 does not (a short last block), 12000: one block
    for block in (compat.BLOCK_FRAMES, 777, FRAMES):
        monkeypatch.setattr(compat, "BLOCK_FRAMES", block)
        given = long_audio.copy()
        got, peak = _peak_traced(compat.blockwise_silero_call, model, given)
        assert got.shape == expected.shape and np.array_equal(got, expected), block
        assert np.array_equal(given, long_audio)  # the caller's audio is left as it was
        if block < FRAMES:
            assert peak < 0.5 * upstream_peak, (block, peak, upstream_peak)
    assert 0.0 < float(expected.max()) <= 1.0  # speech was heard: the comparison is not of two empties


def test_one_frame_is_heard_as_upstream_hears_it():
    from faster_whisper.vad import get_vad_model

    frame = np.random.default_rng(1).normal(0, 0.1, 512).astype(np.float32)
    assert np.array_equal(compat.blockwise_silero_call(get_vad_model(), frame.copy()), _upstream()(get_vad_model(), frame.copy()))
