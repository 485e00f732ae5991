"""Speech recognition: faster-whisper's batched pipeline with VAD and word timestamps.

`Transcriber` builds the CTranslate2 model once (a Dagster resource keeps one per step) and turns
an `Audio` into a `Transcript`. Audio with no speech (silence, noise, under a second) gives an
empty transcript, never an exception.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from chaffee_assets.lib.models.registry import resolve_whisper
from chaffee_assets.lib.models.runtime import ModelRuntime
from chaffee_assets.lib.types import SAMPLE_RATE, Audio, Transcript, TranscriptInfo, Word

log = logging.getLogger(__name__)

MIN_AUDIO_SECONDS = 1.0  # shorter audio is not worth a decoder pass: empty transcript
_CHUNK_SECONDS = 30  # whisper's window; also the longest VAD chunk the batched pipeline decodes
UNDETERMINED = "und"  # ISO 639 "undetermined": the language of audio without speech


@dataclass(frozen=True)
class AsrOptions:
    model: str = "tiny.en"  # packaged alias (tiny.en, base) or a CTranslate2 folder
    batch_size: int = 8
    language: str | None = None  # None: detected (always en for .en models)
    beam_size: int = 5
    vad: bool = True


class Transcriber:
    """One loaded faster-whisper model; `transcribe` may be called for many videos."""

    def __init__(self, options: AsrOptions, runtime: ModelRuntime):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.options = options
        path = resolve_whisper(options.model, runtime.cache_dir)  # ModelNotFound lists the known aliases
        self.device, self.compute_type = runtime.device, runtime.compute_type
        started = time.perf_counter()
        # CTranslate2's threads on CPU; 0: its default (4, more than a 2-core machine has)
        self._model = WhisperModel(str(path), device=self.device, compute_type=self.compute_type, cpu_threads=runtime.threads)
        self._pipeline = BatchedInferencePipeline(model=self._model)
        self.load_seconds = time.perf_counter() - started
        self.multilingual = bool(self._model.model.is_multilingual)
        log.info(
            "loaded whisper %s (%s) on %s/%s in %.1f s",
            options.model, path, self.device, self.compute_type, self.load_seconds,
        )

    def _fixed_language(self) -> str | None:
        if not self.multilingual:
            return "en"
        return self.options.language

    def _info(self, audio: Audio, started: float, language: str, probability: float) -> TranscriptInfo:
        return TranscriptInfo(
            model=self.options.model,
            device=self.device,
            language=language,
            language_probability=float(probability),
            audio_seconds=audio.seconds,
            processing_seconds=time.perf_counter() - started,
            batch_size=self.options.batch_size,
        )

    def _empty(self, audio: Audio, started: float, why: str) -> Transcript:
        log.info("video %s: empty transcript (%s, %.1f s of audio)", audio.meta.video_id, why, audio.seconds)
        language = self._fixed_language() or UNDETERMINED
        return Transcript(audio.meta.video_id, (), self._info(audio, started, language, 0.0))

    def transcribe(self, audio: Audio) -> Transcript:
        """Words with timestamps (seconds from the start of the audio) and run information."""
        started = time.perf_counter()
        wav = np.ascontiguousarray(audio.waveform, dtype=np.float32).reshape(-1)
        if wav.size < MIN_AUDIO_SECONDS * SAMPLE_RATE:
            return self._empty(audio, started, f"shorter than {MIN_AUDIO_SECONDS:.0f} s")
        segments, info = self._pipeline.transcribe(
            wav,
            language=self._fixed_language(),
            beam_size=self.options.beam_size,
            batch_size=self.options.batch_size,
            word_timestamps=True,
            condition_on_previous_text=False,
            **self._chunking(wav),
        )
        if info.duration_after_vad <= 0:
            return self._empty(audio, started, "no speech found by VAD")
        words = tuple(
            Word(start=float(w.start), end=float(w.end), text=w.word, probability=float(w.probability))
            for seg in segments
            for w in (seg.words or ())
        )
        result = Transcript(audio.meta.video_id, words, self._info(audio, started, info.language, info.language_probability))
        log.info(
            "video %s: %d words, %.1f s audio in %.1f s (RTF %.3f), language %s (%.2f)",
            audio.meta.video_id, len(words), audio.seconds, result.info.processing_seconds,
            result.info.processing_seconds / max(audio.seconds, 1e-9), info.language, info.language_probability,
        )
        return result

    def _chunking(self, wav: np.ndarray) -> dict:
        """VAD chunks, or fixed 30 s windows when VAD is off (the batched pipeline needs one or the other)."""
        if self.options.vad:
            return {"vad_filter": True, "vad_parameters": {"min_silence_duration_ms": 160}}
        total = wav.size / SAMPLE_RATE
        starts = np.arange(0.0, total, _CHUNK_SECONDS)
        return {
            "vad_filter": False,
            "clip_timestamps": [{"start": float(s), "end": float(min(s + _CHUNK_SECONDS, total))} for s in starts],
        }
