"""Diarization on real speech: the monologue fast path, pyannote, simple clustering, empty audio."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from chaffee_assets.lib.errors import ModelNotFound
from chaffee_assets.lib.models.diarize import Diarizer, spread_windows
from chaffee_assets.lib.models.vad import speech_regions
from chaffee_assets.lib.types import SAMPLE_RATE, Audio, Diarization, DiarizationOptions, VideoMeta
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


def test_fast_path_on_a_monologue(embedder, monologue, caplog):
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    with caplog.at_level(logging.INFO, logger="chaffee_assets.lib.models.diarize"):
        d = diarizer.diarize(monologue)
    assert d.method == "fast_path" and d.fast_path is True
    assert d.speakers == 1 and {t.speaker for t in d.turns} == {"SPEAKER_00"}
    assert d.monologue_score is not None and d.monologue_score >= diarizer.options.monologue_threshold
    assert not diarizer.pyannote_loaded
    assert "Monologue fast-path detected" in caplog.text
    assert [(t.start, t.end) for t in d.turns] == speech_regions(monologue.waveform)
    assert 0 < d.seconds < 30 and d.video_id == "monologue"


def test_monologue_check_hears_two_voices_in_the_sample(embedder, sample):
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    score = diarizer.monologue_score(sample.waveform)
    assert score is not None and score < diarizer.options.monologue_threshold
    assert not diarizer.pyannote_loaded


@pytest.mark.slow
def test_auto_runs_pyannote_on_the_sample_with_low_der(embedder, sample, fixtures_dir):
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    d = diarizer.diarize(sample)
    assert d.method == "pyannote" and d.fast_path is False and diarizer.pyannote_loaded
    assert d.speakers == 2 and d.monologue_score is not None
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


def test_fast_path_never_imports_pyannote(fixtures_dir, model_cache):
    """In a fresh interpreter: importing the module loads no torch; the fast path loads no pyannote."""
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
d = dz.Diarizer(DiarizationOptions(), EcapaEmbedder(ModelRuntime.resolve("cpu", {str(model_cache)!r}))).diarize(
    Audio(VideoMeta("j", "t", "u"), np.concatenate([jfk, jfk])))
assert d.fast_path, d
assert "pyannote.audio" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


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


@pytest.mark.parametrize("method", ["auto", "pyannote", "simple", "off"])
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
