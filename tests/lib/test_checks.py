"""Each stage's check fails on a bad output and passes on a good one (lib/checks.py)."""

import numpy as np

from chaffee_assets.lib import checks
from chaffee_assets.lib.types import (
    AudioRef,
    Diarization,
    ModelInfo,
    Passage,
    Passages,
    PassageVectors,
    RowCounts,
    Transcript,
    TranscriptInfo,
    Turn,
    VideoMeta,
    Word,
)


def _ref(seconds: float, listed: float) -> AudioRef:
    return AudioRef(VideoMeta("v", "t", "https://example.org/v", listed_s=listed), "mem://v", seconds)


def _transcript(texts: list[str], seconds_each: float = 0.3) -> Transcript:
    words = tuple(Word(i * seconds_each, (i + 1) * seconds_each, f" {t}") for i, t in enumerate(texts))
    return Transcript("v", words, TranscriptInfo("tiny.en", "cpu", "en", 1.0, 60.0, 1.0, 8))


SPEECH_60S = ((0.0, 30.0), (31.0, 61.0))


def test_audio_duration():
    assert checks.audio_duration(_ref(600.0, 601.0)).passed
    assert checks.audio_duration(_ref(600.0, 0.0)).passed  # nothing listed: nothing to compare
    assert not checks.audio_duration(_ref(0.0, 0.0)).passed
    truncated = checks.audio_duration(_ref(300.0, 600.0))
    assert not truncated.passed and "600" in truncated.description


def test_transcript_plausible_catches_loops_silence_and_absurd_rates():
    sentence = "we looked at the data and the fasting group lost more weight than the others".split()
    good = checks.transcript_plausible(_transcript(sentence * 9), SPEECH_60S)  # 135 words a minute
    assert good.passed, good.description
    assert 120 < good.metadata["words_per_minute"] < 150

    loop = checks.transcript_plausible(_transcript(sentence[:20] + ["thank", "you"] * 30 + sentence), SPEECH_60S)
    assert not loop.passed and "repeated" in loop.description

    assert not checks.transcript_plausible(_transcript([]), SPEECH_60S).passed  # a minute of speech, no words
    assert checks.transcript_plausible(_transcript([]), ()).passed  # silence, no words
    hallucinated = checks.transcript_plausible(_transcript(["thanks", "for", "watching"]), ())
    assert not hallucinated.passed and "no speech" in hallucinated.description
    slow = checks.transcript_plausible(_transcript(sentence[:10]), SPEECH_60S)  # 10 words in a minute
    assert not slow.passed and "per minute" in slow.description


def test_longest_loop():
    assert checks.longest_loop("a b a b a b c".split()) == 3
    assert checks.longest_loop("no no no".split()) == 3
    assert checks.longest_loop("one two three".split()) == 1
    assert checks.longest_loop([]) == 0


def _diar(turns, speakers=1) -> Diarization:
    return Diarization("v", tuple(Turn(s, e, "SPEAKER_00") for s, e in turns), "pyannote", False, speakers, 1.0)


def test_diarization_covers_speech():
    assert checks.diarization_covers(_diar([(0.0, 61.0)]), SPEECH_60S).passed
    small = checks.diarization_covers(_diar([(0.0, 10.0)]), SPEECH_60S)
    assert not small.passed and small.metadata["speech_covered"] < 0.5
    assert not checks.diarization_covers(_diar([], speakers=0), SPEECH_60S).passed
    assert checks.diarization_covers(_diar([], speakers=0), ()).passed


def _passages(spans, words_each=5) -> Passages:
    return Passages("v", tuple(Passage("v", i, s, e, "Host", "text", words_each) for i, (s, e) in enumerate(spans)))


def test_passages_bounded():
    assert checks.passages_bounded(_passages([(0, 30), (30, 60)]), 10, 45.0).passed
    assert not checks.passages_bounded(_passages([]), 10, 45.0).passed  # words but no passages
    assert not checks.passages_bounded(_passages([(0, 30)]), 10, 45.0).passed  # half the words lost
    assert not checks.passages_bounded(_passages([(0, 120), (120, 130)]), 10, 45.0).passed  # too long
    assert checks.passages_bounded(_passages([]), 0, 45.0).passed


def test_vectors_valid():
    p = _passages([(0, 30), (30, 60)])
    unit = np.eye(2, 384, dtype=np.float32)
    assert checks.vectors_valid(p, PassageVectors("v", "m", unit), 384).passed
    assert not checks.vectors_valid(p, PassageVectors("v", "m", unit[:1]), 384).passed  # one missing
    assert not checks.vectors_valid(p, PassageVectors("v", "m", np.eye(2, 768, dtype=np.float32)), 384).passed
    nan = unit.copy()
    nan[1, 0] = np.nan
    bad = checks.vectors_valid(p, PassageVectors("v", "m", nan), 384)
    assert not bad.passed and bad.metadata["not_finite"] == 1
    assert not checks.vectors_valid(p, PassageVectors("v", "m", unit * 2), 384).passed  # not normalised
    assert checks.vectors_valid(_passages([]), PassageVectors("v", "m", np.zeros((0, 384), np.float32)), 384).passed


def test_rows_match_and_model_coverage():
    p = _passages([(0, 30), (30, 60)])
    assert checks.rows_match(RowCounts("v", "m", 2, 2, False, False, False, 0.1), p).passed
    assert not checks.rows_match(RowCounts("v", "m", 2, 1, False, False, False, 0.1), p).passed
    assert checks.model_covers_archive(ModelInfo("m", 384, None, 5, 5), "m").passed
    partial = checks.model_covers_archive(ModelInfo("m", 768, None, 3, 5), "m")
    assert not partial.passed and "2 of 5" in partial.description
    assert not checks.model_covers_archive(None, "m").passed


def test_transcript_trusted_warns_when_the_guard_dropped_much_of_the_speech():
    from dataclasses import replace

    base = _transcript(["word"] * 100)
    ok = checks.transcript_trusted(replace(base, info=replace(base.info, segments=10, dropped_segments=1, dropped_seconds=3.0,
                                                               flags=((1.0, 4.0, "loop"),))), SPEECH_60S)
    assert ok.passed and ok.metadata["dropped_share"] == 0.05
    bad = checks.transcript_trusted(replace(base, info=replace(base.info, segments=10, dropped_segments=4, dropped_seconds=20.0,
                                                                flags=((1.0, 11.0, "loop"), (20.0, 30.0, "low_confidence")))), SPEECH_60S)
    assert not bad.passed and "20 s of 60 s" in bad.description and "loop, low_confidence" in bad.description
    guess = checks.transcript_trusted(replace(base, info=replace(base.info, multilingual=True, language="de", language_probability=0.3)),
                                      SPEECH_60S)
    assert not guess.passed and "probability 0.30" in guess.description


def test_transcript_trusted_warns_when_an_english_only_model_heard_another_language():
    from dataclasses import replace

    base = _transcript(["word"] * 100)
    heard = replace(base.info, language_checked=4, other_languages=((30.0, "de", 0.97), (90.0, "de", 0.99)))
    bad = checks.transcript_trusted(replace(base, info=heard), SPEECH_60S)
    assert not bad.passed and "speech in de (2 of 4 windows checked)" in bad.description
    assert bad.metadata["other_language_windows"] == 2 and bad.metadata["language_checked_windows"] == 4
    fine = checks.transcript_trusted(replace(base, info=replace(heard, other_languages=())), SPEECH_60S)
    assert fine.passed
