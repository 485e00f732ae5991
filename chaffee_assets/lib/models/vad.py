"""Speech regions of a waveform, with the silero VAD that ships inside faster-whisper.

No extra package and no torch: faster-whisper runs silero through onnxruntime. The model is
loaded once per process by faster-whisper itself (`get_vad_model` is cached).
"""

from __future__ import annotations

import logging

import numpy as np

from chaffee_assets.lib.types import SAMPLE_RATE, Region

log = logging.getLogger(__name__)

# silero's speech probability cut. On 14 AMI meeting excerpts (bench/speech_quality.py) 0.5 finds
# 81 % of the reference speech with 0.7 % of the non-speech flagged, 0.35 85 % / 1.7 %, 0.25 88 % /
# 3.1 %: quieter speakers for more noise in the transcripts and the monologue check (VAD_THRESHOLD).
THRESHOLD = 0.5


def speech_regions(
    waveform: np.ndarray,
    *,
    threshold: float = THRESHOLD,
    min_speech_ms: int = 100,
    min_silence_ms: int = 500,
    pad_ms: int = 100,
    max_region_s: float = float("inf"),
) -> list[Region]:
    """(start_s, end_s) of every speech region in a 16 kHz mono float32 waveform, in order.

    Regions closer than `min_silence_ms` are merged, shorter than `min_speech_ms` dropped, each is
    padded by `pad_ms` (clipped to the audio) and split at a pause when longer than `max_region_s`.
    Silence, noise, or an empty waveform give [].
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if wav.size < SAMPLE_RATE // 10:  # under 0.1 s: nothing silero can judge
        return []
    opts = VadOptions(
        threshold=threshold,
        min_speech_duration_ms=min_speech_ms,
        min_silence_duration_ms=min_silence_ms,
        speech_pad_ms=pad_ms,
        max_speech_duration_s=max_region_s,
    )
    stamps = get_speech_timestamps(wav, opts, sampling_rate=SAMPLE_RATE)
    total = wav.size / SAMPLE_RATE
    regions = [(s["start"] / SAMPLE_RATE, min(s["end"] / SAMPLE_RATE, total)) for s in stamps]
    regions = [(round(a, 3), round(b, 3)) for a, b in regions if b > a]
    log.debug("VAD: %d speech regions, %.1f s of %.1f s", len(regions), sum(b - a for a, b in regions), total)
    return regions


def speech_seconds(regions: list[Region]) -> float:
    return float(sum(b - a for a, b in regions))

