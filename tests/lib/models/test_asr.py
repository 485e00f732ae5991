"""ASR with the packaged tiny.en model on real speech: accuracy, timestamps, empty audio, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from chaffee_assets.lib.errors import ModelNotFound
from chaffee_assets.lib.models.asr import Transcriber
from chaffee_assets.lib.types import SAMPLE_RATE, AsrOptions, Audio, VideoMeta, Word
from chaffee_assets.lib.voices import read_audio


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def _audio(video_id: str, wav: np.ndarray) -> Audio:
    return Audio(VideoMeta(video_id, "test", "file:///test"), np.asarray(wav, dtype=np.float32))


@pytest.fixture(scope="module")
def transcriber(runtime) -> Transcriber:
    return Transcriber(AsrOptions(model="tiny.en", batch_size=4), runtime)


@pytest.fixture(scope="module")
def jfk(fixtures_dir) -> Audio:
    return _audio("jfk", read_audio(fixtures_dir / "jfk.flac"))


def test_tiny_en_wer_on_jfk(transcriber, jfk, fixtures_dir):
    import jiwer

    tr = transcriber.transcribe(jfk)
    reference = normalise((fixtures_dir / "jfk.txt").read_text())
    wer = jiwer.wer(reference, normalise(tr.text))
    assert wer <= 0.10, (wer, tr.text)

    assert tr.video_id == "jfk"
    info = tr.info
    assert info.model == "tiny.en" and info.device == "cpu" and info.batch_size == 4
    assert info.language == "en" and info.language_probability == 1.0  # .en models are English
    assert info.audio_seconds == pytest.approx(11.0, abs=0.01)
    assert 0 < info.processing_seconds < 60


def test_word_timestamps(transcriber, jfk):
    words = transcriber.transcribe(jfk).words
    assert len(words) >= 20
    assert all(0.0 <= w.start <= w.end <= 11.0 + 0.01 for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
    assert all(w.text.startswith(" ") and 0.0 <= w.probability <= 1.0 and w.speaker is None for w in words)
    country = [w for w in words if "country" in w.text.lower()]
    assert len(country) == 2 and country[-1].start > 9.0  # "...for your country." ends the clip


def test_without_vad_and_longer_than_a_window(jfk, runtime):
    gap = np.zeros(SAMPLE_RATE * 10, dtype=np.float32)
    long = _audio("jfk2", np.concatenate([jfk.waveform, gap, jfk.waveform]))  # 32 s: two windows
    tr = Transcriber(AsrOptions(model="tiny.en", batch_size=4, vad=False), runtime).transcribe(long)
    assert normalise(tr.text).count("fellow americans") == 2
    assert max(w.end for w in tr.words) > 30.0


@pytest.mark.parametrize(
    "kind, wav",
    [
        ("silence", np.zeros(SAMPLE_RATE * 5, dtype=np.float32)),
        ("noise", np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE * 5).astype(np.float32)),
        ("short", np.random.default_rng(1).normal(0, 0.1, SAMPLE_RATE // 2).astype(np.float32)),
        ("empty", np.zeros(0, dtype=np.float32)),
    ],
)
def test_no_speech_gives_an_empty_transcript(transcriber, kind, wav):
    tr = transcriber.transcribe(_audio(kind, wav))
    assert tr.words == () and tr.text == ""
    assert tr.info.audio_seconds == pytest.approx(len(wav) / SAMPLE_RATE)
    assert tr.info.language == "en"


def test_short_speech_is_empty_too(transcriber, jfk):
    tr = transcriber.transcribe(_audio("short", jfk.waveform[int(0.2 * SAMPLE_RATE) : int(1.1 * SAMPLE_RATE)]))
    assert tr.words == ()


def test_unknown_alias_is_a_clear_error(runtime):
    with pytest.raises(ModelNotFound, match=r"unknown whisper model 'large-v9'.*base, tiny\.en"):
        Transcriber(AsrOptions(model="large-v9"), runtime)


def test_folder_without_a_model_is_a_clear_error(tmp_path, runtime):
    with pytest.raises(ModelNotFound, match="no model.bin"):
        Transcriber(AsrOptions(model=str(tmp_path)), runtime)


def test_clean_speech_passes_the_guard(transcriber, jfk):
    info = transcriber.transcribe(jfk).info
    assert info.segments >= 1 and info.dropped_segments == 0 and info.dropped_seconds == 0.0 and info.flags == ()
    assert info.multilingual is False  # an English-only model detects nothing


def test_segments_failing_the_guard_are_decoded_again_then_dropped(transcriber, jfk):
    """A guard no decoding can pass (everything 'loops'): each window is decoded a second time in
    pieces, every piece still fails, and is left out, recorded with its reason."""
    strict = AsrOptions(model="tiny.en", batch_size=4, max_compression_ratio=0.1)
    tr = transcriber.transcribe(jfk, options=strict)
    info = tr.info
    assert tr.words == () and info.segments >= 1
    assert info.redecoded_segments == info.segments and info.dropped_segments >= info.segments
    assert {why for _, _, why in info.flags} == {"loop"} and info.dropped_seconds > 5.0


def test_a_long_talk_is_decoded_in_groups_of_whole_batches_with_the_words_of_one_call(jfk, runtime, monkeypatch):
    """faster-whisper computes the features of every window it is given before it decodes one, so a
    talk goes through in groups of whole batches (`GROUP_BATCHES`): here 5 windows in groups of 2,
    3 calls, with the words one call over all 5 gives."""
    from chaffee_assets.lib.models import asr, vad

    pause = np.zeros(SAMPLE_RATE * 3, dtype=np.float32)  # longer than MAX_GAP_SECONDS: a window each
    talk = _audio("groups", np.concatenate([np.concatenate([jfk.waveform, pause])] * 5))
    speech = vad.speech_regions(talk.waveform, max_region_s=30.0)
    tr = Transcriber(AsrOptions(model="tiny.en", batch_size=2), runtime)
    calls: list[int] = []
    build = tr._pipeline

    def counted():
        pipeline = build()
        decode = pipeline.transcribe

        def transcribe(*args, **kwargs):
            calls.append(len(kwargs["clip_timestamps"]))
            return decode(*args, **kwargs)

        pipeline.transcribe = transcribe
        return pipeline

    monkeypatch.setattr(tr, "_pipeline", counted)
    monkeypatch.setattr(asr, "GROUP_BATCHES", 1)
    grouped = tr.transcribe(talk, speech)
    monkeypatch.setattr(asr, "GROUP_BATCHES", 100)
    whole = tr.transcribe(talk, speech)
    assert calls == [2, 2, 1, 5], calls
    assert grouped.info.segments == whole.info.segments == 5
    assert grouped.words == whole.words
    assert normalise(grouped.text).count("fellow americans") == 5


class _Pipeline:
    """faster-whisper's batched pipeline as far as `decode_in_groups` relies on it: each batch reads
    `last_speech_timestamp`, then sets it (here: to its last clip's end); a call's end resets it; the
    language is the one given or the one it detects ("de")."""

    def __init__(self):
        self.last_speech_timestamp = 0.0
        self.calls: list[tuple[str | None, int]] = []

    def transcribe(self, wav, *, language=None, clip_timestamps=(), batch_size=1, vad_filter=False, **_):
        from types import SimpleNamespace

        self.calls.append((language, len(clip_timestamps)))

        def segments():
            for i in range(0, len(clip_timestamps), batch_size):
                batch, seen = clip_timestamps[i : i + batch_size], self.last_speech_timestamp
                self.last_speech_timestamp = batch[-1]["end"]
                yield from ((c["start"], seen) for c in batch)
            self.last_speech_timestamp = 0.0

        return segments(), SimpleNamespace(language=language or "de")


def test_groups_carry_the_last_words_end_and_the_detected_language_as_one_call_would():
    from chaffee_assets.lib.models.asr import decode_in_groups, group_bounds

    clips = [{"start": 10.0 * i, "end": 10.0 * i + 9.0} for i in range(10)]
    chunking = {"vad_filter": False, "clip_timestamps": clips}
    whole, grouped = _Pipeline(), _Pipeline()
    one = list(decode_in_groups(whole, None, chunking, 100, language=None, batch_size=2, language_detection_segments=1)[0])
    segments, info = decode_in_groups(grouped, None, chunking, 2, language=None, batch_size=2, language_detection_segments=1)
    assert list(segments) == one and info.language == "de"
    assert [seen for _, seen in one][:5] == [0.0, 0.0, 19.0, 19.0, 39.0]
    # the first call holds the 31 s the language is detected over; the next ones are told it
    assert grouped.calls == [(None, 4), ("de", 2), ("de", 2), ("de", 2)] and whole.calls == [(None, 10)]
    assert group_bounds(clips, 4, 2) == [(0, 4), (4, 8), (8, 10)]
    assert group_bounds(clips, 4, 2, detect_seconds=50.0) == [(0, 6), (6, 10)]
    assert group_bounds(clips, 4, 2, detect_seconds=1e9) == [(0, 10)]


def test_a_repeated_sentence_is_kept_and_the_same_every_time(transcriber, jfk):
    """A speaker saying one sentence over and over: each 30 s window compresses like a loop, its
    pieces do not (by the window's own words, or decoded again). Nothing is dropped, and nothing
    samples (the same audio gives the same words, also with other transcriptions running beside it)."""
    from concurrent.futures import ThreadPoolExecutor

    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    talk = _audio("repeats", np.concatenate([np.concatenate([jfk.waveform, pause])] * 5))
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(transcriber.transcribe, [talk, talk])
    third = transcriber.transcribe(talk)
    assert first.info.dropped_segments == 0, first.info.flags
    assert first.words == second.words == third.words
    assert normalise(first.text).count("your country") == 10, first.text


def test_a_window_is_decoded_again_only_when_its_pieces_loop_too():
    """The window-wide ratio flags a speaker repeating one sentence; the ratio over pieces of <= 10 s
    (the window's words by their own timestamps) tells him from a decoding loop."""
    from chaffee_assets.lib.models.asr import compression_ratio, loops_in_words

    o = AsrOptions()

    def timed(text: str, seconds: float) -> list[Word]:
        tokens = text.split()
        step = seconds / len(tokens)
        return [Word(i * step, (i + 0.8) * step, " " + t, 0.9) for i, t in enumerate(tokens)]

    sentence = "And so my fellow Americans ask not what your country can do for you ask what you can do for your country."
    repeated = timed(" ".join([sentence] * 3), 28.0)  # one sentence a piece
    assert compression_ratio("".join(w.text for w in repeated)) > o.max_compression_ratio  # the window looks like a loop
    assert not loops_in_words(repeated, 0.0, 28.0, o)
    looped = timed(sentence + " " + " ".join(["ask not"] * 30), 28.0)  # stuck on two words
    assert loops_in_words(looped, 0.0, 28.0, o)
    assert loops_in_words([], 0.0, 28.0, o)  # nothing to go by: decoded again


@pytest.mark.parametrize(("start", "end", "spans", "pieces"), [
    (0.0, 8.0, [(0.5, 7.5)], [(0.0, 8.0)]),  # short enough: one piece
    (0.0, 27.5, [(0.2, 8.0), (9.0, 18.0), (18.6, 27.2)], [(0.0, 8.5), (8.5, 18.3), (18.3, 27.5)]),  # at the pauses
    (0.0, 20.0, [], [(0.0, 10.0), (10.0, 20.0)]),  # nothing to go by: equal pieces
    (5.0, 25.0, [(0.0, 30.0)], [(5.0, 15.0), (15.0, 25.0)]),  # no pause inside
])
def test_a_flagged_window_is_cut_at_the_pauses_into_equal_pieces(start, end, spans, pieces):
    from chaffee_assets.lib.models.asr import redecode_pieces

    assert redecode_pieces(start, end, spans) == pieces


def test_guard_reasons_follow_whispers_thresholds():
    from types import SimpleNamespace

    from chaffee_assets.lib.models.asr import guard_reason

    o = AsrOptions()
    said = " And so, my fellow Americans, ask not what your country can do for you."
    loop = " Ich bin ein, ich bin ein, ich bin ein," * 12
    seg = lambda text, lp, ns: SimpleNamespace(text=text, avg_logprob=lp, no_speech_prob=ns)  # noqa: E731
    assert guard_reason(seg(said, -0.3, 0.01), o) is None
    assert guard_reason(seg(loop, -0.3, 0.01), o) == "loop"
    assert guard_reason(seg(said, -1.4, 0.2), o) == "low_confidence"
    assert guard_reason(seg(said, -1.4, 0.9), o) == "no_speech"
    assert guard_reason(seg(said, -0.5, 0.9), o) is None  # confident text over a quiet start is kept


def test_words_are_clipped_to_the_audio():
    from chaffee_assets.lib.models.asr import clip_words
    from chaffee_assets.lib.types import Word

    words = [Word(59.0, 60.17, " end"), Word(60.0, 60.3, " past")]
    assert clip_words(words, 59.9) == [Word(59.0, 59.9, " end")]


def test_an_initial_prompt_and_hotwords_are_used(transcriber, jfk, fixtures_dir):
    import jiwer

    options = AsrOptions(model="tiny.en", batch_size=4, initial_prompt="President Kennedy's inaugural address.", hotwords="Americans")
    tr = transcriber.transcribe(jfk, options=options)
    wer = jiwer.wer(normalise((fixtures_dir / "jfk.txt").read_text()), normalise(tr.text))
    assert wer <= 0.10, tr.text
    assert "kennedy" not in normalise(tr.text)  # the prompt conditions the decoding; it is not transcribed


@pytest.fixture(scope="module")
def language_check(runtime):
    from chaffee_assets.lib.models.asr import LanguageCheck

    return LanguageCheck("base", runtime)


def test_an_english_only_model_flags_speech_in_another_language(transcriber, language_check, jfk, fixtures_dir):
    """German (faster-whisper's test reading) on tiny.en: decoded as English guesses, and the
    multilingual model's check says so; English passes the same check."""
    german = _audio("german", read_audio(fixtures_dir / "german.flac"))
    info = transcriber.transcribe(german, language_id=language_check).info
    assert info.language_checked >= 1 and [lang for _, lang, _ in info.other_languages] == ["de"] * len(info.other_languages)
    assert info.other_languages and all(p >= 0.5 for _, _, p in info.other_languages)
    english = transcriber.transcribe(jfk, language_id=language_check).info
    assert english.language_checked == 1 and english.other_languages == ()
    assert transcriber.transcribe(german).info.language_checked == 0  # no check given: none made


def test_the_language_check_hears_windows_spread_over_the_talk():
    from chaffee_assets.lib.models.asr import spread

    windows = [(30.0 * i, 30.0 * i + 28) for i in range(10)]
    assert spread(windows, 4) == [windows[0], windows[3], windows[6], windows[9]]
    assert spread(windows[:3], 4) == windows[:3]
    assert spread(windows, 1) == [windows[0]]


def test_the_language_check_refuses_an_english_only_model(runtime):
    from chaffee_assets.lib.models.asr import LanguageCheck

    with pytest.raises(ValueError, match="multilingual.*'tiny.en' is English-only"):
        LanguageCheck("tiny.en", runtime)


def test_whisper_windows_join_regions_across_short_pauses_only():
    """Regions join into one window while the pause is at most MAX_GAP_SECONDS and the window
    within 30 s; a longer pause starts a window, a region longer than a window is cut."""
    from chaffee_assets.lib.models.asr import MAX_GAP_SECONDS, whisper_clips

    speech = [(0.5, 5.0), (6.0, 9.0), (9.0 + MAX_GAP_SECONDS + 1.0, 15.0), (20.0, 85.0)]
    assert whisper_clips(speech, 80.0) == [
        {"start": 0.5, "end": 9.0}, {"start": 12.0, "end": 15.0},
        {"start": 20.0, "end": 50.0}, {"start": 50.0, "end": 80.0},
    ]
    assert whisper_clips(speech[:3], 80.0, max_gap=10.0) == [{"start": 0.5, "end": 15.0}]
    assert whisper_clips([], 10.0) == []
