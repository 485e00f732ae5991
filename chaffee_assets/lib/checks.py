"""What each stage's output must look like before it flows on: plain functions of the contracts,
each answering a `Check` (passed, what was found, the numbers). The Dagster adapters
(`defs/checks.py`) report them as asset checks; nothing here knows Dagster.

The bounds are for human speech in long talks: a transcript's words per minute of VAD speech
outside [WPM_MIN, WPM_MAX] is a silence hallucination or a decoding loop (whisper's repeated-phrase
failure), as is one phrase repeated LOOP_REPEATS times in a row.
"""

from __future__ import annotations

import numpy as np

from chaffee_assets.lib.types import (
    AudioRef,
    Check,
    Diarization,
    ModelInfo,
    Passages,
    PassageVectors,
    Region,
    RowCounts,
    Transcript,
)

DURATION_TOLERANCE_S = 2.0  # decoded length against the listed duration: 2 s or 2 %, whichever is more
DURATION_TOLERANCE = 0.02
MIN_SPEECH_S = 10.0  # less VAD speech than this: an empty transcript is believable
WPM_MIN, WPM_MAX = 40.0, 320.0  # words per minute of speech (conversational English: ~110-200)
WPM_MIN_SPEECH_S = 30.0  # the rate is judged on at least this much speech
LOOP_REPEATS = 8  # one phrase of 1-4 words this many times in a row
MAX_DROPPED_SHARE = 0.10  # of the speech, whisper segments the guard dropped (loops, low confidence)
MIN_LANGUAGE_PROBABILITY = 0.5  # a detected language below this is a guess
MIN_TURN_COVERAGE = 0.5  # of the VAD speech, inside some speaker turn
NORM_TOLERANCE = 1e-3
PASSAGE_SLACK_S = 5.0  # a passage may pass max_seconds by its last word's length


def audio_duration(ref: AudioRef) -> Check:
    listed = ref.meta.listed_s
    meta = {"seconds": round(ref.seconds, 2), "listed_seconds": round(listed, 2)}
    if ref.seconds <= 0:
        return Check(False, "the decoded audio is empty", meta)
    if listed > 0 and abs(ref.seconds - listed) > max(DURATION_TOLERANCE_S, DURATION_TOLERANCE * listed):
        return Check(False, f"decoded {ref.seconds:.0f} s but the source lists {listed:.0f} s (truncated download?)", meta)
    return Check(True, f"{ref.seconds:.0f} s of audio", meta)


def transcript_plausible(transcript: Transcript, speech: tuple[Region, ...]) -> Check:
    speech_s = sum(e - s for s, e in speech)
    words = len(transcript.words)
    wpm = 60.0 * words / speech_s if speech_s > 0 else 0.0
    loop = longest_loop([w.text.strip().lower() for w in transcript.words])
    meta = {"words": words, "speech_seconds": round(speech_s, 1), "words_per_minute": round(wpm, 1), "longest_loop": loop}
    if words == 0:
        if speech_s >= MIN_SPEECH_S:
            return Check(False, f"no words in {speech_s:.0f} s of speech", meta)
        return Check(True, "no speech, no words", meta)
    if speech_s <= 0:
        return Check(False, f"{words} words where VAD found no speech (hallucinated)", meta)
    if loop >= LOOP_REPEATS:
        return Check(False, f"a phrase repeated {loop} times in a row (a decoding loop)", meta)
    if speech_s >= WPM_MIN_SPEECH_S and not WPM_MIN <= wpm <= WPM_MAX:
        return Check(False, f"{wpm:.0f} words per minute of speech, outside {WPM_MIN:.0f}-{WPM_MAX:.0f}", meta)
    return Check(True, f"{words} words, {wpm:.0f} per minute of speech", meta)


def transcript_trusted(transcript: Transcript, speech: tuple[Region, ...]) -> Check:
    """Whether the transcript can be trusted: not when an English-only model's windows were heard in
    another language by the language check (its words are English guesses), nor when much of the
    speech failed the decoding guard after a second decoding (loops, low-confidence stretches, text
    over non-speech: speech the model cannot read, music, noise)."""
    info = transcript.info
    speech_s = sum(e - s for s, e in speech)
    share = info.dropped_seconds / speech_s if speech_s > 0 else 0.0
    reasons = sorted({why for _, _, why in info.flags})
    meta = {
        "segments": info.segments, "redecoded_segments": info.redecoded_segments, "dropped_segments": info.dropped_segments,
        "dropped_seconds": round(info.dropped_seconds, 1), "dropped_share": round(share, 3),
        "language": info.language, "language_probability": round(info.language_probability, 3),
        "language_checked_windows": info.language_checked, "other_language_windows": len(info.other_languages),
    }
    if info.other_languages:
        languages = ", ".join(sorted({lang for _, lang, _ in info.other_languages}))
        return Check(False, f"speech in {languages} ({len(info.other_languages)} of {info.language_checked} windows checked) "
                            f"on the English-only model {info.model}: its words are English guesses; a multilingual "
                            "WHISPER_MODEL (base) transcribes it", meta)
    if share > MAX_DROPPED_SHARE:
        hint = " (not English? the model is English-only)" if info.language == "en" and not info.multilingual else ""
        return Check(False, f"{info.dropped_seconds:.0f} s of {speech_s:.0f} s of speech dropped as untrustworthy "
                            f"({', '.join(reasons)}){hint}", meta)
    if transcript.words and info.multilingual and info.language_probability < MIN_LANGUAGE_PROBABILITY:
        return Check(False, f"language {info.language} detected with probability {info.language_probability:.2f} only", meta)
    return Check(True, f"{info.dropped_segments} of {info.segments} segments dropped ({info.dropped_seconds:.1f} s), "
                       f"{info.redecoded_segments} decoded twice", meta)


def longest_loop(tokens: list[str], max_phrase: int = 4) -> int:
    """The most times one phrase of 1..max_phrase tokens repeats back to back."""
    best = 1 if tokens else 0
    for n in range(1, max_phrase + 1):
        i = 0
        while i + 2 * n <= len(tokens):
            reps = 1
            while tokens[i + reps * n : i + (reps + 1) * n] == tokens[i : i + n]:
                reps += 1
            best = max(best, reps)
            i += n * reps if reps > 1 else 1
    return best


def diarization_covers(diarization: Diarization, speech: tuple[Region, ...]) -> Check:
    speech_s = sum(e - s for s, e in speech)
    covered = sum(_overlap(region, (t.start, t.end)) for region in speech for t in diarization.turns)
    fraction = min(1.0, covered / speech_s) if speech_s > 0 else 1.0
    meta = {"speakers": diarization.speakers, "turns": len(diarization.turns), "speech_covered": round(fraction, 3)}
    if speech_s > 0 and diarization.speakers < 1:
        return Check(False, "speech but no speaker", meta)
    if speech_s >= MIN_SPEECH_S and fraction < MIN_TURN_COVERAGE:
        return Check(False, f"turns cover {fraction:.0%} of the speech", meta)
    return Check(True, f"{diarization.speakers} speakers, turns cover {fraction:.0%} of the speech", meta)


def _overlap(a: Region, b: Region) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def passages_bounded(passages: Passages, words: int, max_seconds: float) -> Check:
    lengths = [p.end - p.start for p in passages.passages]
    in_passages = sum(p.n_words for p in passages.passages)
    meta = {"passages": len(lengths), "words": words, "words_in_passages": in_passages,
            "max_passage_seconds": round(max(lengths), 2) if lengths else 0.0}
    if words and not lengths:
        return Check(False, f"{words} words but no passages", meta)
    if in_passages != words:
        return Check(False, f"{in_passages} of {words} words are in passages", meta)
    too_long = sum(1 for n in lengths if n > max_seconds + PASSAGE_SLACK_S)
    backwards = sum(1 for n in lengths if n < 0)
    if too_long or backwards:
        return Check(False, f"{too_long} passages longer than {max_seconds:.0f} s, {backwards} ending before they start", meta)
    return Check(True, f"{len(lengths)} passages", meta)


def vectors_valid(passages: Passages, vectors: PassageVectors, dim: int) -> Check:
    v = np.asarray(vectors.vectors)
    n = len(passages.passages)
    if n == 0 and v.size == 0:
        return Check(True, "no passages, no vectors", {"vectors": 0, "passages": 0})
    meta = {"vectors": int(v.shape[0]) if v.ndim == 2 else 0, "passages": n, "dimensions": int(v.shape[1]) if v.ndim == 2 else 0}
    if v.ndim != 2 or v.shape[0] != n:
        return Check(False, f"{meta['vectors']} vectors for {n} passages", meta)
    if n and v.shape[1] != dim:
        return Check(False, f"vectors of {v.shape[1]} dimensions, the model has {dim}", meta)
    finite = np.isfinite(v).all(axis=1)
    norms = np.linalg.norm(np.where(finite[:, None], v, 0.0), axis=1)
    off_unit = int(np.sum(finite & (np.abs(norms - 1.0) > NORM_TOLERANCE)))
    meta |= {"not_finite": int(np.sum(~finite)), "not_unit_norm": off_unit}
    if meta["not_finite"] or off_unit:
        return Check(False, f"{meta['not_finite']} vectors with NaN/inf, {off_unit} not of unit length", meta)
    return Check(True, f"{n} unit vectors of {dim} dimensions", meta)


def rows_match(stored: RowCounts, passages: Passages) -> Check:
    n = len(passages.passages)
    meta = {"segments_stored": stored.segments, "vectors_stored": stored.vectors, "passages": n}
    if stored.segments != n or stored.vectors != n:
        return Check(False, f"the archive holds {stored.segments} segments and {stored.vectors} vectors for {n} passages", meta)
    return Check(True, f"{n} segments with vectors ({stored.model})", meta)


def model_covers_archive(info: ModelInfo | None, model: str) -> Check:
    if info is None:
        return Check(False, f"no vectors of {model} in the archive", {"videos_covered": 0})
    meta = {"videos_covered": info.videos_covered, "videos_with_passages": info.videos_with_passages}
    missing = info.videos_with_passages - info.videos_covered
    if missing > 0:
        return Check(False, f"{missing} of {info.videos_with_passages} stored videos have no {model} vectors yet (re-embed)", meta)
    return Check(True, f"every stored video has {model} vectors", meta)
