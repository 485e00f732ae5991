"""Speech recognition: faster-whisper's batched pipeline with VAD and word timestamps.

`Transcriber` builds the CTranslate2 model once (the model service keeps one per replica) and turns
an `Audio` into a `Transcript`. Audio with no speech (silence, noise, under a second) gives an
empty transcript, never an exception.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from chaffee_assets.lib.models.registry import resolve_whisper
from chaffee_assets.lib.models.runtime import ModelRuntime
from chaffee_assets.lib.types import SAMPLE_RATE, AsrOptions, Audio, Region, Transcript, TranscriptInfo, Word

log = logging.getLogger(__name__)

MIN_AUDIO_SECONDS = 1.0  # shorter audio is not worth a decoder pass: empty transcript
# A longer pause between two speech regions starts a new whisper window. Longer pauses inside a
# window lose words (bench/whisper_windows.py: 1760 words of 4 talks, tiny.en: 0 errors in 71
# windows at 2 s, 0 in 60 at 3 s, 2 in 51 at 4 s, 30 in 40 at 8 s; packing the speech with the
# silences cut out, as faster-whisper's own VAD path does, 29 errors in 30 windows; one more talk,
# in bench/README.md, lost 4.2 % of its words at 2 s and 12.5 % at 3 s).
MAX_GAP_SECONDS = 2.0
_CHUNK_SECONDS = 30  # whisper's window; also the longest VAD chunk the batched pipeline decodes
UNDETERMINED = "und"  # ISO 639 "undetermined": the language of audio without speech
OTHER_LANGUAGE_PROBABILITY = 0.5  # the language check names another language at this probability or more

LanguageId = Callable[[np.ndarray], tuple[str, float]]  # a window's waveform -> (language code, probability)




def whisper_clips(speech: Sequence[Region], total: float, max_seconds: float = _CHUNK_SECONDS,
                  max_gap: float | None = None) -> list[dict[str, float]]:
    """Speech regions merged into whisper's windows: consecutive regions join while the window
    stays within `max_seconds` and the pause between them is at most `max_gap` (a window is mostly
    speech, and whisper decodes each window once); a region longer than a window is cut into
    windows. Clipped to the audio's `total` seconds. `max_gap`: `MAX_GAP_SECONDS` unless given."""
    max_gap = MAX_GAP_SECONDS if max_gap is None else max_gap
    clips: list[list[float]] = []
    for a, b in speech:
        a, b = max(0.0, float(a)), min(float(b), total)
        while b - a > max_seconds:
            clips.append([a, a + max_seconds])
            a += max_seconds
        if b <= a:
            continue
        if clips and a - clips[-1][1] <= max_gap and b - clips[-1][0] <= max_seconds:
            clips[-1][1] = b
        else:
            clips.append([a, b])
    return [{"start": round(a, 3), "end": round(b, 3)} for a, b in clips]


# A flagged window is decoded again in pieces of at most this length, each with its own context:
# a speaker repeating a sentence gives pieces that each pass the guard, a decoding loop does not.
REDECODE_PIECE_SECONDS = 10.0


def redecode_pieces(start: float, end: float, spans: Sequence[Region], max_seconds: float = REDECODE_PIECE_SECONDS) -> list[tuple[float, float]]:
    """[start, end] cut into the fewest pieces of about equal length within about `max_seconds`, each
    cut in the middle of the longest pause between two `spans` (the window's speech regions, or its
    decoded words) within half a piece of its place, or at that place when there is none."""
    length = end - start
    n = max(1, math.ceil(length / max_seconds - 1e-9))
    inside = sorted((float(a), float(b)) for a, b in spans if b > start and a < end)
    pauses = [((b0 + a1) / 2, a1 - b0) for (_, b0), (a1, _) in itertools.pairwise(inside) if a1 >= b0]
    bounds = [start]
    for k in range(1, n):
        place, reach = start + k * length / n, length / n / 2
        near = [(width, -abs(at - place), at) for at, width in pauses if bounds[-1] < at < end and abs(at - place) <= reach]
        bounds.append(max(near)[2] if near else place)
    bounds.append(end)
    return [(round(a, 3), round(b, 3)) for a, b in itertools.pairwise(bounds)]


def spread(windows: Sequence[tuple[float, float]], n: int) -> list[tuple[float, float]]:
    """`n` of `windows` evenly spread from the first to the last (all of them when there are fewer)."""
    if len(windows) <= n:
        return list(windows)
    picks = np.unique(np.linspace(0, len(windows) - 1, max(1, n)).round().astype(int))
    return [windows[i] for i in picks]


def compression_ratio(text: str) -> float:
    """Bytes over zlib-compressed bytes (whisper's measure): a decoding loop compresses very well."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def guard_reason(segment: Any, options: AsrOptions) -> str | None:
    """Why a decoded whisper segment cannot be trusted (None: it can): a repetition loop (its text
    compresses too well; in the batched pipeline a segment is a whole window, where a speaker who
    says one sentence twice also reaches the ratio: `loops_in_words`, then `Transcriber._redecode`
    tell the two apart),
    a hallucination over non-speech, or a low-confidence stretch."""
    if compression_ratio(segment.text) > options.max_compression_ratio:
        return "loop"
    if segment.avg_logprob < options.min_avg_logprob:
        return "no_speech" if segment.no_speech_prob > options.max_no_speech_prob else "low_confidence"
    return None


def load_whisper(model: str, runtime: ModelRuntime, workers: int = 1) -> tuple[Any, Any]:
    """A faster-whisper model by alias or folder (`ModelNotFound` lists the known aliases), on the
    runtime's device, with `workers` transcriptions at once; and the folder it came from."""
    from faster_whisper import WhisperModel

    path = resolve_whisper(model, runtime.cache_dir)
    # CTranslate2's threads on CPU; 0: its default (4, more than a 2-core machine has)
    return WhisperModel(str(path), device=runtime.device, compute_type=runtime.compute_type, cpu_threads=runtime.threads,
                        num_workers=max(1, workers)), path


def loops_in_words(words: Sequence[Word], start: float, end: float, options: AsrOptions) -> bool:
    """Does the text of a window flagged as a loop also loop within the pieces a second decoding
    would cut it into (`redecode_pieces`, by its words' own timestamps)? A decoding loop repeats
    within seconds and does; a speaker who says one sentence again a few times over 30 s does not,
    and needs no second decoding (each piece's words are what that decoding hears, at 0.7-1.4)."""
    if not words:
        return True
    cuts = [b for _, b in redecode_pieces(start, end, [(w.start, w.end) for w in words])[:-1]]
    texts = [""] * (len(cuts) + 1)
    for w in words:  # each word in the piece holding its middle
        texts[bisect.bisect_right(cuts, (w.start + w.end) / 2)] += w.text
    return any(compression_ratio(t) > options.max_compression_ratio for t in texts)


def clip_words(words: Sequence[Word], seconds: float) -> list[Word]:
    """Words inside the audio: a word starting past its end is dropped, one ending past it cut there."""
    return [Word(max(0.0, w.start), min(w.end, seconds), w.text, w.probability) for w in words if w.start < seconds]


# Whisper windows per call of faster-whisper's batched pipeline. It computes the log-mel features of
# every window it is given before it decodes the first batch (about 2 MB per minute of speech with 80
# mels, twice over while it stacks them, a third time for a multilingual model's language detection;
# 128 mels for large models), so one call over a 3-hour talk holds them all. A talk goes through in
# groups of whole batches: the same batches, the same words.
GROUP_BATCHES = 4


def group_bounds(clips: Sequence[dict[str, float]], group: int, batch: int, detect_seconds: float = 0.0) -> list[tuple[int, int]]:
    """[start, end) of the clips of each call: `group` clips each (a multiple of `batch`), the first
    grown by whole batches until it holds `detect_seconds` of audio (what the language detection
    reads of the first windows' features, which one call would take from the windows after them)."""
    first = min(group, len(clips))
    seconds = sum(c["end"] - c["start"] for c in clips[:first])
    while first < len(clips) and seconds < detect_seconds:
        seconds += sum(c["end"] - c["start"] for c in clips[first : first + batch])
        first += batch
    first = min(first, len(clips))
    return [(0, first)] + [(a, min(a + group, len(clips))) for a in range(first, len(clips), group)]


def decode_in_groups(pipeline: Any, wav: np.ndarray, chunking: dict, group: int, *,
                     language: str | None, **kwargs: Any) -> tuple[Iterator[Any], Any]:
    """faster-whisper's batched transcription of `wav` (`chunking`: its clip timestamps, or its own
    VAD), in calls of `group` clips (`group_bounds`) when the clips are given, with the words of one
    call: the first call holds the windows the language is detected over, its language is the next
    calls' language, and the end of the last word decoded (`last_speech_timestamp`, which bounds the
    next word's start) carries from call to call, where the pipeline would reset it at the end of
    each. The segments (lazily; their `id` counts from 1 in each call) and the first call's
    information (its `duration_after_vad` is the first call's)."""
    clips = chunking.get("clip_timestamps")
    if not clips or len(clips) <= group:
        return pipeline.transcribe(wav, language=language, **kwargs, **chunking)
    detect = 0.0 if language else kwargs.get("language_detection_segments", 1) * _CHUNK_SECONDS + 1.0
    bounds = group_bounds(clips, group, max(1, kwargs.get("batch_size", 1)), detect)
    first, info = pipeline.transcribe(wav, language=language, **kwargs, vad_filter=False, clip_timestamps=clips[: bounds[0][1]])
    language = language or info.language

    def segments() -> Iterator[Any]:
        carry, current = 0.0, first
        for n, (a, b) in enumerate(bounds):
            if n:
                current, _ = pipeline.transcribe(wav, language=language, **kwargs, vad_filter=False, clip_timestamps=clips[a:b])
                pipeline.last_speech_timestamp = carry
            for segment in current:
                carry = pipeline.last_speech_timestamp  # set by the batch that decoded it
                yield segment

    return segments(), info


class Transcriber:
    """One loaded faster-whisper model; `transcribe` may be called for many videos."""

    def __init__(self, options: AsrOptions, runtime: ModelRuntime, workers: int = 1):
        """`workers`: transcriptions that may run at once from different threads (CTranslate2's
        `num_workers`; each has `runtime.threads` CPU threads)."""
        self.options = options
        self.device, self.compute_type = runtime.device, runtime.compute_type
        started = time.perf_counter()
        self._model, path = load_whisper(options.model, runtime, workers)
        self.load_seconds = time.perf_counter() - started
        self.multilingual = bool(self._model.model.is_multilingual)
        log.info(
            "loaded whisper %s (%s) on %s/%s in %.1f s",
            options.model, path, self.device, self.compute_type, self.load_seconds,
        )

    def _pipeline(self) -> Any:
        """faster-whisper's batched pipeline over the loaded model, one per transcription: it keeps
        the last word's end between batches (`last_speech_timestamp`), which concurrent
        transcriptions must not share."""
        from faster_whisper import BatchedInferencePipeline

        return BatchedInferencePipeline(model=self._model)

    def _fixed_language(self, language: str | None = None) -> str | None:
        if not self.multilingual:
            return "en"
        return language or self.options.language

    def _info(self, audio: Audio, started: float, language: str, probability: float, batch_size: int | None = None) -> TranscriptInfo:
        return TranscriptInfo(
            model=self.options.model,
            device=self.device,
            language=language,
            language_probability=float(probability),
            audio_seconds=audio.seconds,
            processing_seconds=time.perf_counter() - started,
            batch_size=batch_size or self.options.batch_size,
        )

    def _empty(self, audio: Audio, started: float, why: str) -> Transcript:
        log.info("video %s: empty transcript (%s, %.1f s of audio)", audio.meta.video_id, why, audio.seconds)
        language = self._fixed_language() or UNDETERMINED
        return Transcript(audio.meta.video_id, (), self._info(audio, started, language, 0.0))

    def transcribe(self, audio: Audio, speech: Sequence[Region] | None = None, options: AsrOptions | None = None,
                   language_id: LanguageId | None = None) -> Transcript:
        """Words with timestamps (seconds from the start of the audio) and run information.

        `speech`: the video's speech regions when VAD already ran (once per video, before the
        model step): whisper decodes those, merged into windows of up to 30 s, and runs no VAD of
        its own. None: faster-whisper's VAD (or, with `vad=False`, fixed 30 s windows). `options`:
        this call's batch size, language and beam (the model is the loaded one). `language_id`: a
        multilingual model's language detection, to check an English-only model's windows."""
        o = options or self.options
        started = time.perf_counter()
        wav = np.ascontiguousarray(audio.waveform, dtype=np.float32).reshape(-1)
        if wav.size < MIN_AUDIO_SECONDS * SAMPLE_RATE:
            return self._empty(audio, started, f"shorter than {MIN_AUDIO_SECONDS:.0f} s")
        chunking = self._chunking(wav, o) if speech is None else self._given_speech(speech, wav.size / SAMPLE_RATE)
        if chunking is None:
            return self._empty(audio, started, "no speech found by VAD")
        language = self._fixed_language(o.language)
        detect = self.multilingual and language is None  # per 30 s window: a talk may switch language
        decoding = dict(beam_size=o.beam_size, batch_size=o.batch_size, word_timestamps=True, condition_on_previous_text=False,
                        initial_prompt=o.initial_prompt, hotwords=o.hotwords, multilingual=detect)
        pipeline = self._pipeline()
        segments, info = decode_in_groups(
            pipeline, wav, chunking, GROUP_BATCHES * max(1, o.batch_size),
            language=language, language_detection_segments=max(1, o.language_windows), **decoding,
        )
        if info.duration_after_vad <= 0:
            return self._empty(audio, started, "no speech found by VAD")
        words: list[Word] = []
        decoded = 0
        flagged: list[tuple[Any, Sequence[Region]]] = []
        windows: list[tuple[float, float]] = []
        for seg in segments:
            decoded += 1
            windows.append((float(seg.start), float(seg.end)))
            seg_words = [Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in (seg.words or ())]
            reason = guard_reason(seg, o)
            if reason is None or (reason == "loop" and not loops_in_words(seg_words, float(seg.start), float(seg.end), o)):
                words += seg_words  # a loop only over the whole window: a speaker saying one thing again
            else:
                flagged.append((seg, speech if speech is not None else [(w.start, w.end) for w in seg_words]))
        again, dropped = self._redecode(pipeline, wav, flagged, o, language or info.language, decoding)
        words = clip_words(sorted(words + again, key=lambda w: (w.start, w.end)), audio.seconds)
        others, checked = self._other_languages(wav, windows, o, language_id)
        dropped_s = sum(b - a for a, b, _ in dropped)
        result = Transcript(audio.meta.video_id, tuple(words), replace(
            self._info(audio, started, info.language, info.language_probability, o.batch_size),
            segments=decoded, redecoded_segments=len(flagged), dropped_segments=len(dropped),
            dropped_seconds=round(dropped_s, 3), flags=tuple(dropped), multilingual=detect,
            other_languages=others, language_checked=checked,
        ))
        if others:
            log.warning(
                "video %s: the English-only model %s decoded speech the language check hears as %s (%d of %d windows "
                "checked): a multilingual model transcribes it", audio.meta.video_id, o.model,
                ", ".join(sorted({lang for _, lang, _ in others})), len(others), checked,
            )
        if dropped:
            log.warning(
                "video %s: %d stretches (%.1f s) of %d whisper windows failed the guard after a second decoding and "
                "are not indexed: %s", audio.meta.video_id, len(dropped), dropped_s, decoded,
                ", ".join(f"{a:.1f}-{b:.1f} s {why}" for a, b, why in dropped[:5]) + (" ..." if len(dropped) > 5 else ""),
            )
        log.info(
            "video %s: %d words, %.1f s audio in %.1f s (RTF %.3f), language %s (%.2f)",
            audio.meta.video_id, len(words), audio.seconds, result.info.processing_seconds,
            result.info.processing_seconds / max(audio.seconds, 1e-9), info.language, info.language_probability,
        )
        return result

    def _other_languages(self, wav: np.ndarray, windows: Sequence[tuple[float, float]], o: AsrOptions,
                         language_id: LanguageId | None) -> tuple[tuple[tuple[float, str, float], ...], int]:
        """An English-only model decodes any speech as English guesses: `o.language_windows` of the
        decoded windows, spread over the talk, heard by a multilingual model's language detection.
        The windows it names another language in, and how many it heard."""
        if self.multilingual or language_id is None or not windows:
            return (), 0
        picks = spread(windows, max(1, o.language_windows))
        found = []
        for a, b in picks:
            language, probability = language_id(wav[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)])
            if language != "en" and probability >= OTHER_LANGUAGE_PROBABILITY:
                found.append((round(a, 3), language, round(float(probability), 3)))
        return tuple(found), len(picks)

    def _redecode(self, pipeline: Any, wav: np.ndarray, flagged: Sequence[tuple[Any, Sequence[Region]]], o: AsrOptions,
                  language: str | None, decoding: dict) -> tuple[list[Word], list[tuple[float, float, str]]]:
        """The flagged windows decoded again in pieces cut at pauses (`redecode_pieces`), all in one
        batched call, deterministically (the batched pipeline decodes at temperature 0 with beam
        search and never samples: the same audio gives the same archive). The words of the pieces
        that pass the guard, and the pieces that do not (start, end, reason)."""
        clips: list[dict[str, float]] = []
        dropped: list[tuple[float, float, str]] = []
        for seg, spans in flagged:
            for a, b in redecode_pieces(float(seg.start), float(seg.end), spans):
                if b - a < 0.5:  # too short to decode alone
                    dropped.append((round(a, 3), round(b, 3), guard_reason(seg, o) or "loop"))
                else:
                    clips.append({"start": a, "end": b})
        words: list[Word] = []
        if clips:
            segments, _ = pipeline.transcribe(wav, language=language, vad_filter=False, clip_timestamps=clips, **decoding)
            for again in segments:
                reason = guard_reason(again, o)
                if reason is not None:
                    dropped.append((round(float(again.start), 3), round(float(again.end), 3), reason))
                    continue
                words += [Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in (again.words or ())]
        return words, sorted(dropped)

    def _given_speech(self, speech: Sequence[Region], total: float) -> dict | None:
        clips = whisper_clips(speech, total)
        return {"vad_filter": False, "clip_timestamps": clips} if clips else None

    def _chunking(self, wav: np.ndarray, options: AsrOptions) -> dict:
        """VAD chunks, or fixed 30 s windows when VAD is off (the batched pipeline needs one or the other)."""
        if options.vad:
            return {"vad_filter": True, "vad_parameters": {"min_silence_duration_ms": 160}}
        total = wav.size / SAMPLE_RATE
        starts = np.arange(0.0, total, _CHUNK_SECONDS)
        return {
            "vad_filter": False,
            "clip_timestamps": [{"start": float(s), "end": float(min(s + _CHUNK_SECONDS, total))} for s in starts],
        }


class LanguageCheck:
    """A multilingual whisper model used only to name the language of a window (faster-whisper's
    `detect_language`): the check of an English-only model's transcript (`AsrOptions.language_check`)."""

    def __init__(self, model: str, runtime: ModelRuntime):
        self._model, _ = load_whisper(model, runtime)
        if not self._model.model.is_multilingual:
            raise ValueError(f"the language check needs a multilingual whisper model; {model!r} is English-only")

    def __call__(self, waveform: np.ndarray) -> tuple[str, float]:
        language, probability, _ = self._model.detect_language(np.asarray(waveform, dtype=np.float32))
        return language, float(probability)
