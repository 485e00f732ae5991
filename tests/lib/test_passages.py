import random

import pytest

from chaffee_assets.lib.errors import InvalidVideoId
from chaffee_assets.lib.passages import approx_token_count, build_passages
from chaffee_assets.lib.types import PassageOptions, Passages, Word


def words_of(text: str, speaker: str | None = "Chaffee", start: float = 0.0, step: float = 0.5) -> list[Word]:
    out = []
    for i, tok in enumerate(text.split()):
        t = start + i * step
        out.append(Word(start=t, end=t + step * 0.8, text=" " + tok, speaker=speaker))
    return out


def check_invariants(words: list[Word], result: Passages, options: PassageOptions, count=approx_token_count) -> None:
    """No word lost or doubled; one speaker each; exact times; ordinals; bounds unless one word."""
    assert [p.ordinal for p in result.passages] == list(range(len(result.passages)))
    offset = 0
    for p in result.passages:
        chunk = words[offset : offset + p.n_words]
        assert len(chunk) == p.n_words >= 1
        assert p.text == "".join(w.text for w in chunk).strip()
        assert p.start == chunk[0].start and p.end == chunk[-1].end
        assert {w.speaker or "Unknown" for w in chunk} == {p.speaker}
        assert p.video_id == result.video_id
        if len(chunk) > 1:
            assert p.end - p.start <= options.max_seconds
            assert sum(count(w.text) for w in chunk) <= options.max_tokens
        offset += p.n_words
    assert offset == len(words)


def test_empty_input_gives_no_passages():
    result = build_passages("vid1", [], PassageOptions())
    assert result == Passages(video_id="vid1", passages=())


def test_short_sentences_pack_into_one_passage():
    words = words_of("Meat is good. Plants are not. Why? Because!")
    opts = PassageOptions(max_seconds=60, max_tokens=100)
    result = build_passages("vid1", words, opts)
    assert [p.text for p in result.passages] == ["Meat is good. Plants are not. Why? Because!"]
    check_invariants(words, result, opts)


def test_cuts_fall_on_sentence_ends_when_sentences_fit():
    words = words_of("One two three four. Five six seven eight. Nine ten eleven twelve.")
    opts = PassageOptions(max_seconds=100, max_tokens=10)  # two sentences are 10 tokens
    result = build_passages("vid1", words, opts)
    assert [p.text for p in result.passages] == [
        "One two three four. Five six seven eight.",
        "Nine ten eleven twelve.",
    ]
    check_invariants(words, result, opts)


def test_a_sentence_longer_than_the_limit_is_cut_at_word_boundaries():
    words = words_of(" ".join(f"w{i}" for i in range(25)) + ". Short one.")
    opts = PassageOptions(max_seconds=100, max_tokens=10)
    result = build_passages("vid1", words, opts)
    assert [p.n_words for p in result.passages][:2] == [10, 10]
    # the long sentence's tail takes the next sentence when it fits
    assert result.passages[-1].text.endswith("w24. Short one.")
    check_invariants(words, result, opts)


def test_time_limit_bounds_passages():
    words = words_of("a b c d e f g h i j k l m n o p q r s t.", step=1.0)  # 20 s of words
    opts = PassageOptions(max_seconds=5, max_tokens=1000)
    result = build_passages("vid1", words, opts)
    assert len(result.passages) == 4
    assert all(p.end - p.start <= 5 for p in result.passages)
    check_invariants(words, result, opts)


def test_speaker_change_always_starts_a_new_passage():
    words = words_of("Hello there how", "Chaffee") + words_of("are you doing.", "Guest 1", start=10)
    words += words_of("Fine thanks.", None, start=20)
    opts = PassageOptions(max_seconds=100, max_tokens=100)
    result = build_passages("vid1", words, opts)
    assert [(p.speaker, p.text) for p in result.passages] == [
        ("Chaffee", "Hello there how"),
        ("Guest 1", "are you doing."),
        ("Unknown", "Fine thanks."),
    ]
    check_invariants(words, result, opts)


def test_exact_times_and_asr_spacing():
    words = [
        Word(1.25, 1.5, " Hello", speaker="A"),
        Word(1.5, 1.75, ",", speaker="A"),
        Word(1.8, 2.1, " world", speaker="A"),
        Word(2.1, 2.33, "!", speaker="A"),
    ]
    result = build_passages("vid1", words, PassageOptions())
    (p,) = result.passages
    assert (p.start, p.end, p.text, p.n_words) == (1.25, 2.33, "Hello, world!", 4)


@pytest.mark.parametrize("ending", ["wow.", "what?", "no!", "well…", 'said."', "(really.)", "“done.”"])
def test_sentence_end_marks(ending):
    words = words_of(f"aa bb {ending} cc dd ee")
    opts = PassageOptions(max_seconds=100, max_tokens=5)
    result = build_passages("vid1", words, opts, count_tokens=lambda t: 1)
    assert result.passages[0].text == f"aa bb {ending}"


def test_a_single_overlong_word_stands_alone():
    words = [Word(0, 100, " loooong", speaker="A"), Word(100, 101, " b.", speaker="A")]
    opts = PassageOptions(max_seconds=10, max_tokens=10)
    result = build_passages("vid1", words, opts)
    assert [p.n_words for p in result.passages] == [1, 1]
    check_invariants(words, result, opts)


def test_custom_token_counter_is_used():
    words = words_of("alpha beta gamma delta.")
    result = build_passages("vid1", words, PassageOptions(max_seconds=100, max_tokens=4), count_tokens=lambda t: 2)
    assert [p.n_words for p in result.passages] == [2, 2]


def test_invalid_video_id_and_options():
    with pytest.raises(InvalidVideoId):
        build_passages("../etc", [], PassageOptions())
    with pytest.raises(ValueError):
        PassageOptions(max_seconds=0)
    with pytest.raises(ValueError):
        PassageOptions(max_tokens=0)


@pytest.mark.parametrize("seed", range(25))
def test_random_transcripts_keep_every_word_once(seed):
    rng = random.Random(seed)
    vocab = ["meat", "fat", "the", "carnivore", "diet", "is", "why", "insulin", "a", "ketosis"]
    speakers = ["Chaffee", "Guest 1", None]
    words, t, spk = [], 0.0, "Chaffee"
    for _ in range(rng.randint(0, 400)):
        if rng.random() < 0.03:
            spk = rng.choice(speakers)
        dur = rng.uniform(0.05, 1.2)
        text = " " + rng.choice(vocab) + rng.choice(["", "", "", "", ".", "?", "!", ",", "…"])
        words.append(Word(t, t + dur, text, speaker=spk))
        t += dur + rng.choice([0.0, 0.0, 0.1, 2.0])
    opts = PassageOptions(max_seconds=rng.uniform(2, 60), max_tokens=rng.randint(1, 80))
    check_invariants(words, build_passages("vid1", words, opts), opts)
