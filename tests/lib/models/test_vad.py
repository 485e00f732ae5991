"""Speech regions with faster-whisper's silero VAD, and device resolution."""

from __future__ import annotations

import numpy as np
import pytest

from chaffee_assets.lib.errors import DeviceUnavailable
from chaffee_assets.lib.models.runtime import resolve_device
from chaffee_assets.lib.models.vad import speech_regions, speech_seconds
from chaffee_assets.lib.voices import read_audio

SR = 16_000


def _reference_turns(rttm) -> list[tuple[float, float]]:
    turns = []
    for line in rttm.read_text().splitlines():
        f = line.split()
        turns.append((float(f[3]), float(f[3]) + float(f[4])))
    return turns


def test_jfk_speech_regions(fixtures_dir):
    wav = read_audio(fixtures_dir / "jfk.flac")
    regions = speech_regions(wav)
    assert regions and all(0.0 <= a < b <= 11.0 for a, b in regions)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(regions, regions[1:], strict=False))  # ordered, disjoint
    assert 7.0 < speech_seconds(regions) <= 11.0


def test_sample_regions_cover_the_reference_speech(fixtures_dir):
    wav = read_audio(fixtures_dir / "sample.wav")
    regions = speech_regions(wav)
    t = np.arange(0, 30, 0.01)
    speech = np.zeros_like(t, dtype=bool)
    for a, b in _reference_turns(fixtures_dir / "sample.rttm"):
        speech |= (t >= a) & (t < b)
    found = np.zeros_like(speech)
    for a, b in regions:
        found |= (t >= a) & (t < b)
    assert (speech & found).sum() / speech.sum() > 0.95  # recall of reference speech
    assert (found & ~speech).sum() * 0.01 < 3.0  # at most a few seconds of extra


def test_silence_noise_and_tiny_audio_have_no_speech():
    rng = np.random.default_rng(0)
    assert speech_regions(np.zeros(SR * 5, dtype=np.float32)) == []
    assert speech_regions(rng.normal(0, 0.1, SR * 5).astype(np.float32)) == []
    assert speech_regions(np.zeros(100, dtype=np.float32)) == []
    assert speech_regions(np.zeros(0, dtype=np.float32)) == []


def test_long_regions_are_split(fixtures_dir):
    wav = read_audio(fixtures_dir / "sample.wav")
    regions = speech_regions(wav, max_region_s=8.0)
    assert max(b - a for a, b in regions) <= 8.0 + 0.3


def test_resolve_device():
    import torch

    assert resolve_device("cpu") == ("cpu", "int8")
    expected = ("cuda", "float16") if torch.cuda.is_available() else ("cpu", "int8")
    assert resolve_device("auto") == expected
    with pytest.raises(DeviceUnavailable, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="no CUDA"):
            resolve_device("cuda")
