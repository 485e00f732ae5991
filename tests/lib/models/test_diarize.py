"""Diarization on real speech: the monologue fast path, pyannote, simple clustering, empty audio."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from chaffee_assets.lib.errors import ModelNotFound
from chaffee_assets.lib.models.diarize import (
    Diarizer,
    clip_turns,
    monologue_windows,
    needed_seconds,
    spread_windows,
)
from chaffee_assets.lib.models.vad import speech_regions
from chaffee_assets.lib.types import SAMPLE_RATE, Audio, Diarization, DiarizationOptions, Turn, VideoMeta
from chaffee_assets.lib.voices import read_audio


def _audio(video_id: str, wav: np.ndarray) -> Audio:
    return Audio(VideoMeta(video_id, "test", "file:///test"), np.asarray(wav, dtype=np.float32))


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


@pytest.fixture(scope="module")
def embedder(runtime):
    from chaffee_assets.lib.models.ecapa import EcapaEmbedder

    return EcapaEmbedder(runtime)


@pytest.fixture(scope="module")
def monologue(fixtures_dir) -> Audio:
    """JFK three times with pauses: 39 s, one voice."""
    jfk = read_audio(fixtures_dir / "jfk.flac")
    return _audio("monologue", np.concatenate([jfk, _silence(2), jfk, _silence(2), jfk, _silence(2)]))


@pytest.fixture(scope="module")
def sample(fixtures_dir) -> Audio:
    return _audio("sample", read_audio(fixtures_dir / "sample.wav"))


def der(diarization: Diarization, rttm) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for line in rttm.read_text().splitlines():
        f = line.split()
        ref[Segment(float(f[3]), float(f[3]) + float(f[4]))] = f[7]
    for t in diarization.turns:
        hyp[Segment(t.start, t.end)] = t.speaker
    return float(DiarizationErrorRate()(ref, hyp))


def test_spread_windows_cover_the_speech():
    regions = [(0.0, 10.0), (20.0, 21.5), (30.0, 60.0)]
    windows = spread_windows(regions, 12, 3.0)
    assert len(windows) == 12
    assert all(any(a <= s and e <= b for a, b in regions) for s, e in windows)  # each inside one region
    assert all(1.0 <= e - s <= 3.0 for s, e in windows)
    assert windows[0][0] < 5 and windows[-1][1] > 55  # spread from start to end
    assert spread_windows([(0.0, 4.0)], 12, 3.0) == [(0.0, 3.0), (1.0, 4.0)]  # short audio: half overlap
    assert len(spread_windows([(0.0, 3600.0)], 24, 2.0)) == 24
    assert spread_windows([(0.0, 0.5)], 12, 3.0) == []
    assert spread_windows([], 12, 3.0) == []


def test_the_check_samples_more_of_longer_talks_and_must_catch_3_percent_or_30_s():
    o = DiarizationOptions()
    assert needed_seconds(600, o) == pytest.approx(18.0)  # 3 % of a 10-minute talk
    assert needed_seconds(3 * 3600, o) == 30.0  # 30 s of a 3-hour one
    assert needed_seconds(10, o) == 1.0  # never under a second
    short, hour, long = (len(monologue_windows([(0.0, s)], o)) for s in (300.0, 3600.0, 8 * 3600.0))
    assert short == o.monologue_min_windows and hour == 360 and long == 2880
    # a voice of 3 % of a 5-minute talk still lies under three windows or more
    assert 0.03 * 300 / (300 / short) >= 3


def test_distinct_cluster_finds_a_minority_voice_and_ignores_one_odd_window():
    from chaffee_assets.lib.models.diarize import distinct_cluster
    from chaffee_assets.lib.vectors import normalize

    rng = np.random.default_rng(0)
    host, guest, odd = rng.normal(size=(3, 192))
    rows = lambda centre, n: normalize(centre + 0.6 * rng.normal(size=(n, 192)))  # noqa: E731
    count, sim = distinct_cluster(np.vstack([rows(host, 40), rows(guest, 4)]))
    assert count == 4 and sim < 0.2
    count, sim = distinct_cluster(np.vstack([rows(host, 40), rows(odd, 1)]))
    assert sim is None or sim > 0.5  # a single window is no voice: only splits of the host remain
    assert distinct_cluster(rows(host, 3)) == (0, None)


def test_clip_turns_keeps_turns_inside_the_audio():
    turns = [Turn(-0.2, 1.0, "A"), Turn(58.0, 60.17, "B"), Turn(60.0, 61.0, "A")]
    assert clip_turns(turns, 59.9) == (Turn(0.0, 1.0, "A"), Turn(58.0, 59.9, "B"))


def test_fast_path_on_a_monologue(embedder, monologue, caplog):
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    with caplog.at_level(logging.INFO, logger="chaffee_assets.lib.models.diarize"):
        d = diarizer.diarize(monologue)
    assert d.method == "fast_path" and d.fast_path is True
    assert d.speakers == 1 and {t.speaker for t in d.turns} == {"SPEAKER_00"}
    c = d.check
    assert c is not None and c.decision == "one" and c.foreign_seconds == 0.0 and c.overlap_seconds == 0.0
    # the margin: the window least like JFK is still far above the foreign-voice cut
    assert c.lowest_similarity > diarizer.options.monologue_foreign_similarity + 0.05
    assert d.monologue_score == c.score < diarizer.options.monologue_catch
    assert not diarizer.pyannote_loaded
    assert "Monologue fast-path detected" in caplog.text
    assert [(t.start, t.end) for t in d.turns] == speech_regions(monologue.waveform)
    assert 0 < d.seconds < 60 and d.video_id == "monologue"


def test_monologue_check_hears_two_voices_in_the_sample(embedder, sample):
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    c = diarizer.monologue_check(sample.waveform)
    assert c.decision == "several" and c.score >= diarizer.options.monologue_catch
    assert not diarizer.pyannote_loaded


def test_a_guest_with_4_percent_of_a_long_talk_is_heard(embedder, fixtures_dir):
    """Five minutes of JFK (30 times) with 12 s of Sheila (from the sample) in the middle: the old check's
    24 windows over the whole talk judged such talks one voice."""
    jfk = read_audio(fixtures_dir / "jfk.flac")
    sheila = np.concatenate([read_audio(fixtures_dir / "sample.wav", 14.75, 17.9), read_audio(fixtures_dir / "sample.wav", 21.8, 27.8)])
    host = [jfk, _silence(1.0)] * 30
    wav = np.concatenate(host[:30] + [sheila, sheila[: SAMPLE_RATE * 3], _silence(1.0)] + host[30:])
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    c = diarizer.monologue_check(wav)
    assert 0.03 < 12.0 / c.speech_seconds < 0.05
    assert c.decision == "several" and c.foreign_seconds >= diarizer.options.monologue_catch * c.needed_seconds
    alone = diarizer.monologue_check(np.concatenate(host))
    assert alone.decision == "one" and alone.windows >= 0.9 * diarizer.options.monologue_min_windows


def test_two_voices_at_once_in_one_channel_are_heard(embedder, fixtures_dir):
    """JFK with Sheila speaking over him (mixed into one channel): the segmentation model's overlap."""
    jfk = read_audio(fixtures_dir / "jfk.flac")
    sheila = read_audio(fixtures_dir / "sample.wav", 21.8, 27.8)
    mixed = jfk.copy()
    mixed[2 * SAMPLE_RATE : 2 * SAMPLE_RATE + sheila.size] += sheila
    wav = np.concatenate([jfk, _silence(1.0), mixed, _silence(1.0), jfk])
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    c = diarizer.monologue_check(wav)
    assert c.decision == "several", c
    assert (c.overlap_seconds or 0.0) > 0 or c.foreign_seconds > 0


def test_too_little_speech_is_said_and_taken_as_one_voice(embedder, fixtures_dir):
    wav = np.concatenate([_silence(3.0), read_audio(fixtures_dir / "jfk.flac", 0.3, 2.5), _silence(3.0)])
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    d = diarizer.diarize(_audio("short", wav))
    assert d.check is not None and d.check.decision == "too_little" and d.fast_path and d.speakers == 1


@pytest.mark.slow
def test_auto_runs_pyannote_on_the_sample_with_low_der(embedder, sample, fixtures_dir):
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    d = diarizer.diarize(sample)
    assert d.method == "pyannote" and d.fast_path is False and diarizer.pyannote_loaded
    assert d.speakers == 2 and d.check is not None and d.check.decision == "several"
    assert der(d, fixtures_dir / "sample.rttm") <= 0.10
    assert [t.start for t in d.turns] == sorted(t.start for t in d.turns)
    assert d.turns[0].speaker == "SPEAKER_00"  # labelled in order of first appearance


@pytest.mark.slow
def test_pyannote_threads_follow_the_cores_share_between_batches(embedder, sample, monkeypatch):
    """With sharing on, pyannote gives a core up while another model computes in the process and
    takes it back once that one is done, between its batches (lib/models/threads.py)."""
    import threading

    import torch

    from chaffee_assets.lib import clock
    from chaffee_assets.lib.models import threads

    before = torch.get_num_threads()
    threads.share_cores(cores=2, interval_s=0.0)
    release, entered = threading.Event(), threading.Event()

    def other_model():
        with clock.model_call("whisper"):
            entered.set()
            release.wait(60)

    seen: list[int] = []
    real = threads.rebalance

    def spy():
        real()
        seen.append(torch.get_num_threads())
        if len(seen) == 2:
            release.set()
            other.join()

    monkeypatch.setattr(threads, "rebalance", spy)
    other = threading.Thread(target=other_model)
    other.start()
    entered.wait(10)
    try:
        diarizer = Diarizer(DiarizationOptions(method="pyannote"), embedder)
        turns = diarizer.pyannote_turns(sample.waveform[: 15 * SAMPLE_RATE])
    finally:
        release.set()
        threads.stop_sharing()
        torch.set_num_threads(before)
    assert turns
    assert len(seen) >= 4, seen
    assert seen[:2] == [1, 1] and set(seen[2:]) == {2}, seen


def test_fast_path_never_builds_the_pyannote_pipeline(fixtures_dir, model_cache):
    """In a fresh interpreter: importing the module loads no torch; the fast path builds no pyannote
    pipeline (the check's segmentation model alone)."""
    code = f"""
import sys
import numpy as np
import chaffee_assets.lib.models.diarize as dz
heavy = [m for m in ("torch", "pyannote.audio", "speechbrain", "faster_whisper") if m in sys.modules]
assert not heavy, heavy
from chaffee_assets.lib.models.ecapa import EcapaEmbedder
from chaffee_assets.lib.models.runtime import ModelRuntime
from chaffee_assets.lib.types import Audio, DiarizationOptions, VideoMeta
from chaffee_assets.lib.voices import read_audio
jfk = read_audio({str(fixtures_dir / "jfk.flac")!r})
diarizer = dz.Diarizer(DiarizationOptions(), EcapaEmbedder(ModelRuntime.resolve("cpu", {str(model_cache)!r})))
d = diarizer.diarize(Audio(VideoMeta("j", "t", "u"), np.concatenate([jfk, jfk])))
assert d.fast_path and d.check.decision == "one", d
assert not diarizer.pyannote_loaded and diarizer._segmentation is not None
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_hybrid_clusters_the_sample_and_takes_the_fast_path_on_a_monologue(embedder, sample, monologue, fixtures_dir):
    diarizer = Diarizer(DiarizationOptions(), embedder)  # the default: hybrid
    assert diarizer.options.method == "hybrid"
    d = diarizer.diarize(sample)
    assert d.method == "simple" and d.check.decision == "several" and d.speakers == 2
    assert der(d, fixtures_dir / "sample.rttm") <= 0.25 and not diarizer.pyannote_loaded
    d = diarizer.diarize(monologue)
    assert d.fast_path and d.speakers == 1


def test_speaker_bounds_hold_simple_clustering(embedder, sample):
    one = Diarizer(DiarizationOptions(method="simple", max_speakers=1), embedder).diarize(sample)
    assert one.speakers == 1
    three = Diarizer(DiarizationOptions(method="simple", min_speakers=3), embedder).diarize(sample)
    assert three.speakers == 3
    with pytest.raises(ValueError, match="min 3 / max 2"):
        DiarizationOptions(min_speakers=3, max_speakers=2)


def test_off_gives_one_turn_per_region(embedder, sample):
    regions = [(1.0, 2.5), (4.0, 9.0)]
    diarizer = Diarizer(DiarizationOptions(method="off"), embedder)
    d = diarizer.diarize(sample, speech_regions=regions)
    assert d.method == "off" and not d.fast_path and d.speakers == 1
    assert [(t.start, t.end, t.speaker) for t in d.turns] == [(1.0, 2.5, "SPEAKER_00"), (4.0, 9.0, "SPEAKER_00")]
    assert d.monologue_score is None and not diarizer.pyannote_loaded


def test_simple_clustering_on_the_sample(embedder, sample, fixtures_dir):
    diarizer = Diarizer(DiarizationOptions(method="simple"), embedder)
    d = diarizer.diarize(sample)
    assert d.method == "simple" and d.speakers >= 2 and not diarizer.pyannote_loaded
    assert der(d, fixtures_dir / "sample.rttm") <= 0.25
    assert all(a.end <= b.start + 1e-6 for a, b in zip(d.turns, d.turns[1:], strict=False))


@pytest.mark.parametrize("method", ["hybrid", "auto", "pyannote", "simple", "off"])
@pytest.mark.parametrize("kind", ["silence", "noise", "short"])
def test_no_speech_gives_an_empty_diarization(embedder, fixtures_dir, method, kind):
    if kind == "silence":
        wav = _silence(5)
    elif kind == "noise":
        wav = np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE * 5).astype(np.float32)
    else:  # 0.8 s of real speech
        wav = read_audio(fixtures_dir / "jfk.flac", 0.3, 1.1)
    diarizer = Diarizer(DiarizationOptions(method=method), embedder)
    d = diarizer.diarize(_audio(kind, wav))
    assert d.turns == () and d.speakers == 0
    assert not diarizer.pyannote_loaded


def test_bad_options_are_clear_errors(embedder, sample):
    with pytest.raises(ValueError, match="unknown diarization method 'magic'"):
        DiarizationOptions(method="magic")
    diarizer = Diarizer(DiarizationOptions(method="pyannote", pyannote_model="/no/such/pipeline"), embedder)
    with pytest.raises(ModelNotFound, match="no config.yaml"):
        diarizer.diarize(sample)
    assert not diarizer.pyannote_loaded
