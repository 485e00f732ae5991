"""Speaker labels: pure word/turn assignment and naming, then real naming of enrolled voices."""

from __future__ import annotations

import numpy as np
import pytest

from chaffee_assets.lib.speakers import SpeakerNamer, assign_words, first_appearance, name_speakers
from chaffee_assets.lib.types import (
    SAMPLE_RATE,
    Audio,
    Diarization,
    Profile,
    Transcript,
    TranscriptInfo,
    Turn,
    VideoMeta,
    Word,
)
from chaffee_assets.lib.voices import read_audio


@pytest.fixture(scope="module")
def embedder(runtime):
    from chaffee_assets.lib.models.ecapa import EcapaEmbedder

    return EcapaEmbedder(runtime)


@pytest.fixture(scope="module")
def sample_wav(fixtures_dir) -> np.ndarray:
    return read_audio(fixtures_dir / "sample.wav")


@pytest.fixture(scope="module")
def jfk_wav(fixtures_dir) -> np.ndarray:
    return read_audio(fixtures_dir / "jfk.flac")


# -- assign_words: a pure function over intervals -------------------------------------------------


def _w(start: float, end: float, text: str = " x") -> Word:
    return Word(start, end, text)


def test_word_takes_the_turn_it_overlaps_most():
    turns = [Turn(0.0, 2.0, "A"), Turn(2.0, 5.0, "B")]
    words = [_w(0.1, 0.5), _w(1.8, 2.6), _w(1.5, 2.2), _w(4.0, 4.5)]
    assert [w.speaker for w in assign_words(words, turns)] == ["A", "B", "A", "B"]


def test_word_outside_every_turn_takes_the_nearest():
    turns = [Turn(0.0, 1.0, "A"), Turn(5.0, 6.0, "B")]
    words = [_w(1.2, 1.4), _w(4.5, 4.8), _w(9.0, 9.5), _w(-1.0, -0.5)]
    assert [w.speaker for w in assign_words(words, turns)] == ["A", "B", "B", "A"]


def test_tie_goes_to_the_nearest_turn():
    # equal overlap (0.2 s) with two turns, the midpoint (2.1) touches both: the nearer centre (B) wins
    turns = [Turn(0.0, 2.1, "A"), Turn(1.9, 4.0, "B")]
    assert assign_words([_w(1.9, 2.3)], turns)[0].speaker == "B"
    # a zero-length word overlaps nothing: the turn that contains it wins
    assert assign_words([_w(3.0, 3.0)], turns)[0].speaker == "B"


def test_overlapping_turns_and_many_words():
    turns = [Turn(0.0, 10.0, "A"), Turn(3.0, 4.0, "B")]
    words = [_w(i * 0.01, i * 0.01 + 0.3) for i in range(1200)]  # more than one block
    out = assign_words(words, turns)
    assert len(out) == 1200
    assert out[310].speaker in ("A", "B")
    assert out[0].speaker == "A" and out[900].speaker == "A"
    assert [w.text for w in out] == [w.text for w in words]


def test_no_turns_gives_no_speaker():
    words = [Word(0.0, 1.0, " hi", 0.9, speaker="old")]
    assert assign_words(words, []) == (Word(0.0, 1.0, " hi", 0.9, None),)
    assert assign_words([], [Turn(0, 1, "A")]) == ()


# -- name_speakers --------------------------------------------------------------------------------


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def _profile(name: str, v) -> Profile:
    return Profile(name=name, centroid=_unit(v), model_id="m", n_clips=1)


def test_known_voices_are_named_and_unknown_are_guests_in_order():
    profiles = [_profile("Host", [1, 0, 0, 0]), _profile("Other", [0, 1, 0, 0])]
    emb = {
        "SPEAKER_00": _unit([0, 0, 1, 0]),  # unknown, first to speak
        "SPEAKER_01": np.stack([_unit([1, 0.1, 0, 0]), _unit([1, -0.1, 0.1, 0])]),  # Host (several turns)
        "SPEAKER_02": _unit([0, 0, 0, 1]),  # unknown
        "SPEAKER_03": _unit([0.1, 1, 0, 0]),  # Other
    }
    names = name_speakers(emb, profiles, threshold=0.5, host="Host", order=["SPEAKER_00", "SPEAKER_01", "SPEAKER_02", "SPEAKER_03"])
    assert names == {"SPEAKER_00": "Guest 1", "SPEAKER_01": "Host", "SPEAKER_02": "Guest 2", "SPEAKER_03": "Other"}
    # numbering follows the order of first appearance, not the cluster labels
    names = name_speakers(emb, profiles, 0.5, "Host", order=["SPEAKER_02", "SPEAKER_03", "SPEAKER_01", "SPEAKER_00"])
    assert names["SPEAKER_02"] == "Guest 1" and names["SPEAKER_00"] == "Guest 2"


def test_threshold_and_over_split_speaker():
    profiles = [_profile("Host", [1, 0, 0])]
    emb = {"A": _unit([1, 0.2, 0]), "B": _unit([1, 0, 0.3]), "C": _unit([1, 1.5, 0])}  # C: cos 0.55
    assert name_speakers(emb, profiles, 0.5, "Host") == {"A": "Host", "B": "Host", "C": "Host"}
    assert name_speakers(emb, profiles, 0.6, "Host")["C"] == "Guest 1"


def test_monologue_without_profiles_is_the_host():
    emb = {"SPEAKER_00": _unit([1, 0, 0])}
    assert name_speakers(emb, [], 0.5, "Chaffee", monologue=True) == {"SPEAKER_00": "Chaffee"}
    assert name_speakers(emb, [], 0.5, "Chaffee", monologue=False) == {"SPEAKER_00": "Guest 1"}
    two = {"SPEAKER_00": _unit([1, 0, 0]), "SPEAKER_01": _unit([0, 1, 0])}
    assert name_speakers(two, [], 0.5, "Chaffee") == {"SPEAKER_00": "Guest 1", "SPEAKER_01": "Guest 2"}


def test_an_unenrolled_host_keeps_his_monologues_when_guests_are_enrolled():
    guest = [_profile("Dr Baker", [0, 1, 0])]
    host_voice = {"SPEAKER_00": _unit([1, 0, 0])}
    assert name_speakers(host_voice, guest, 0.5, "Chaffee", monologue=True) == {"SPEAKER_00": "Chaffee"}
    assert name_speakers({"SPEAKER_00": _unit([0.1, 1, 0])}, guest, 0.5, "Chaffee", monologue=True) == {"SPEAKER_00": "Dr Baker"}
    # in an interview nobody can be told to be the un-enrolled host: the unknown voice is a guest
    two = {"SPEAKER_00": _unit([1, 0, 0]), "SPEAKER_01": _unit([0, 1, 0])}
    assert name_speakers(two, guest, 0.5, "Chaffee", monologue=False) == {"SPEAKER_00": "Guest 1", "SPEAKER_01": "Dr Baker"}
    # the host enrolled like any voice: the profile decides, a monologue of another voice is a guest
    both = [*guest, _profile("chaffee", [1, 0, 0])]
    assert name_speakers(host_voice, both, 0.5, "Chaffee", monologue=True) == {"SPEAKER_00": "chaffee"}
    assert name_speakers({"SPEAKER_00": _unit([0, 0, 1])}, both, 0.5, "Chaffee", monologue=True) == {"SPEAKER_00": "Guest 1"}


def test_first_appearance_order():
    turns = [Turn(5, 6, "SPEAKER_00"), Turn(1, 2, "SPEAKER_01"), Turn(3, 4, "SPEAKER_00")]
    assert first_appearance(turns) == ["SPEAKER_01", "SPEAKER_00"]


# -- SpeakerNamer on real audio -------------------------------------------------------------------


def _transcript(video_id: str, words: tuple[Word, ...]) -> Transcript:
    return Transcript(video_id, words, TranscriptInfo("test", "cpu", "en", 1.0, 0.0, 0.0, 1))


def test_fast_path_without_profiles_labels_everything_as_host(embedder):
    audio = Audio(VideoMeta("mono", "t", "u"), np.zeros(SAMPLE_RATE * 4, dtype=np.float32))
    dia = Diarization("mono", (Turn(0.5, 3.5, "SPEAKER_00"),), "fast_path", True, 1, 0.1, 0.9)
    labels = SpeakerNamer(embedder, [], 0.5, "Chaffee").label(audio, _transcript("mono", (_w(1, 2, " hi"),)), dia)
    assert labels.names == {"SPEAKER_00": "Chaffee"}
    assert [w.speaker for w in labels.words] == ["Chaffee"] and labels.turns[0].speaker == "Chaffee"


def test_empty_diarization_gives_unlabelled_words(embedder):
    audio = Audio(VideoMeta("quiet", "t", "u"), np.zeros(SAMPLE_RATE, dtype=np.float32))
    dia = Diarization("quiet", (), "fast_path", True, 0, 0.0)
    labels = SpeakerNamer(embedder, [], 0.5, "Chaffee").label(audio, _transcript("quiet", ()), dia)
    assert labels.names == {} and labels.turns == () and labels.words == ()


@pytest.mark.slow
def test_enrolled_voices_are_named_on_other_parts(fixtures_dir, embedder, tmp_path, sample_wav, jfk_wav):
    """Enrol Sheila and Diane from one part of sample.wav, name them in other parts; JFK is a guest."""
    from chaffee_assets.lib.voices import enroll, load_profiles

    sample = str(fixtures_dir / "sample.wav")
    enroll("Sheila", [(sample, 21.78, 27.85)], tmp_path, embedder)
    enroll("Diane", [(sample, 11.03, 14.49)], tmp_path, embedder)
    profiles = load_profiles(tmp_path, embedder.model_id)

    def cut(a: float, b: float) -> np.ndarray:
        return sample_wav[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)]

    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    parts = [("Diane", cut(18.6, 21.45)), ("JFK", jfk_wav), ("Sheila", cut(14.7, 17.9)), ("Diane", cut(28.5, 30.0))]
    pieces, turns, t = [], [], 0.0
    for who, wav in parts:  # reference turns play the diarization (its quality is tested elsewhere)
        turns.append(Turn(t, t + len(wav) / SAMPLE_RATE, f"C_{who}"))
        pieces += [wav, gap]
        t += len(wav) / SAMPLE_RATE + 1.0
    audio = Audio(VideoMeta("named", "t", "u"), np.concatenate(pieces))
    dia = Diarization("named", tuple(turns), "pyannote", False, 3, 0.0)
    words = tuple(_w(tt.start + 0.2, tt.start + 0.5, f" {tt.speaker}") for tt in turns)

    labels = SpeakerNamer(embedder, profiles, 0.5, "Chaffee").label(audio, _transcript("named", words), dia)
    assert labels.names == {"C_Diane": "Diane", "C_JFK": "Guest 1", "C_Sheila": "Sheila"}
    assert labels.similarities["C_Diane"] > 0.5 and labels.similarities["C_JFK"] < 0.3
    assert [w.speaker for w in labels.words] == ["Diane", "Guest 1", "Sheila", "Diane"]


def _assign_by_brute_force(words, turns):
    """The rule of assign_words, every word against every turn (the reference)."""
    out = []
    for w in words:
        mid = (w.start + w.end) / 2
        overlaps = [max(0.0, min(w.end, t.end) - max(w.start, t.start)) for t in turns]
        top = max(overlaps)
        tied = [i for i, o in enumerate(overlaps) if o >= top - 1e-9]
        best = min(tied, key=lambda i: max(0.0, turns[i].start - mid, mid - turns[i].end) + 1e-6 * abs(mid - (turns[i].start + turns[i].end) / 2))
        out.append(turns[best].speaker)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_assign_words_matches_every_word_against_every_turn(seed):
    """Overlapping turns, gaps, words outside every turn, zero-length words: the same speakers as
    the brute-force rule."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.uniform(0, 300, 40))
    turns = [Turn(float(s), float(s + rng.uniform(0.5, 25)), f"S{rng.integers(4)}") for s in starts]
    words = []
    for s in rng.uniform(-10, 340, 400):
        words.append(_w(float(s), float(s + (0.0 if rng.random() < 0.1 else rng.uniform(0.05, 1.5)))))
    assert [w.speaker for w in assign_words(words, turns)] == _assign_by_brute_force(words, turns)
    shuffled = [turns[i] for i in rng.permutation(len(turns))]  # the order turns come in does not matter
    assert [w.speaker for w in assign_words(words, shuffled)] == _assign_by_brute_force(words, turns)
