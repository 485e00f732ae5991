"""Voice profiles: enrolment from real speech, the folder layout, and what is refused."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from chaffee_assets.lib.errors import VoiceProfileError
from chaffee_assets.lib.voices import PROFILE_FILE, enroll, load_profiles, read_audio, validate_name


@pytest.fixture(scope="module")
def embedder(runtime):
    from chaffee_assets.lib.models.ecapa import EcapaEmbedder

    return EcapaEmbedder(runtime)


def test_read_audio_decodes_and_resamples(fixtures_dir):
    jfk = read_audio(fixtures_dir / "jfk.flac")  # 44.1 kHz stereo FLAC
    assert jfk.dtype == np.float32 and jfk.ndim == 1
    assert abs(len(jfk) / 16_000 - 11.0) < 0.01
    part = read_audio(fixtures_dir / "sample.wav", 10.0, 12.5)
    assert len(part) == 40_000


def test_read_audio_errors(tmp_path):
    with pytest.raises(VoiceProfileError, match="not found"):
        read_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(VoiceProfileError, match="cannot decode"):
        read_audio(bad)


@pytest.mark.parametrize("name", ["Anthony Chaffee", "guest_2", "Dr-X", "A"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "../evil", "a/b", "a\\b", ".hidden", "..", " lead", "trail ", "x" * 65, "name\n", "é"])
def test_invalid_names_are_refused(name):
    with pytest.raises(VoiceProfileError, match="invalid voice name"):
        validate_name(name)


@pytest.mark.slow
def test_enroll_creates_extends_and_loads(fixtures_dir, embedder, tmp_path):
    sample = fixtures_dir / "sample.wav"
    first = enroll("Sheila", [(sample, 21.78, 27.85)], tmp_path, embedder)
    assert first.n_clips == 1 and first.model_id == "speechbrain/spkrec-ecapa-voxceleb"
    assert abs(np.linalg.norm(first.centroid) - 1.0) < 1e-5 and first.centroid.shape == (192,)

    data = json.loads((tmp_path / "Sheila" / PROFILE_FILE).read_text())
    assert data["embedding_model"] == embedder.model_id and data["n_clips"] == 1 and len(data["centroid"]) == 192
    assert data["sources"] == [{"path": str(sample.resolve()), "start": 21.78, "end": 27.85}]

    more = enroll("Sheila", [(sample, 14.7, 17.9)], tmp_path, embedder)  # extends: running mean
    assert more.n_clips == 2 and len(more.sources) == 2
    assert abs(np.linalg.norm(more.centroid) - 1.0) < 1e-5
    assert 0.8 < float(more.centroid @ first.centroid) < 0.9999

    enroll("Diane", [(sample, 11.03, 14.49), (sample, 18.6, 21.45)], tmp_path, embedder)
    profiles = load_profiles(tmp_path, embedder.model_id)
    assert [p.name for p in profiles] == ["Diane", "Sheila"]
    assert profiles[0].n_clips == 2
    assert float(profiles[0].centroid @ profiles[1].centroid) < 0.6  # two different voices


def test_enroll_refuses_silence_and_another_model(fixtures_dir, embedder, tmp_path):
    import soundfile as sf

    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(16_000 * 3, dtype=np.float32), 16_000)
    with pytest.raises(VoiceProfileError, match="no speech"):
        enroll("Nobody", [(quiet, None, None)], tmp_path / "voices", embedder)
    with pytest.raises(VoiceProfileError, match="no audio sources"):
        enroll("Nobody", [], tmp_path / "voices", embedder)
    with pytest.raises(VoiceProfileError, match="invalid voice name"):
        enroll("../escape", [(quiet, None, None)], tmp_path / "voices", embedder)

    _write_profile(tmp_path / "voices", "Old", model="some/other-model")
    with pytest.raises(VoiceProfileError, match="enroll it again"):
        enroll("Old", [(fixtures_dir / "jfk.flac", None, None)], tmp_path / "voices", embedder)


def _write_profile(voices, name: str, model: str, centroid=None) -> None:
    (voices / name).mkdir(parents=True)
    data = {"name": name, "embedding_model": model, "n_clips": 1, "centroid": centroid or [1.0, 0.0, 0.0], "sources": []}
    (voices / name / PROFILE_FILE).write_text(json.dumps(data))


def test_missing_voices_folder_is_empty_and_no_warning(tmp_path, caplog):
    """Nothing enrolled yet is the normal state of a fresh install: said at INFO, not warned about."""
    with caplog.at_level(logging.INFO, logger="chaffee_assets.lib.voices"):
        assert load_profiles(tmp_path / "nope", "m") == []
    assert "not found" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_profile_of_another_model_is_refused_or_skipped(tmp_path, caplog):
    _write_profile(tmp_path, "Host", model="m")
    _write_profile(tmp_path, "Stale", model="old-model")
    (tmp_path / "empty-folder").mkdir()  # a folder without profile.json is not a profile
    with pytest.raises(VoiceProfileError, match="Stale.*old-model"):
        load_profiles(tmp_path, "m")
    with caplog.at_level(logging.WARNING, logger="chaffee_assets.lib.voices"):
        profiles = load_profiles(tmp_path, "m", strict=False)
    assert [p.name for p in profiles] == ["Host"]
    assert "skipping voice profile" in caplog.text


def test_unreadable_profile_is_an_error(tmp_path):
    (tmp_path / "Broken").mkdir()
    (tmp_path / "Broken" / PROFILE_FILE).write_text("{not json")
    with pytest.raises(VoiceProfileError, match="unreadable voice profile"):
        load_profiles(tmp_path, "m")
    _write_profile(tmp_path / "v2", "NaN", model="m", centroid=[float("nan"), 1.0])
    with pytest.raises(VoiceProfileError, match="finite"):
        load_profiles(tmp_path / "v2", "m")
