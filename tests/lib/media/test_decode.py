"""Decoding real fixture speech (and broken files) to 16 kHz mono with PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from chaffee_assets.lib.errors import DecodeError
from chaffee_assets.lib.media.decode import decode_to_16k_mono, probe_duration, sniff_non_media
from chaffee_assets.lib.types import SAMPLE_RATE
from tests.helpers.media_server import encode_audio, make_video_only


@pytest.fixture(scope="module")
def jfk16(fixtures_dir: Path) -> np.ndarray:
    return decode_to_16k_mono(fixtures_dir / "jfk.flac", "jfk")


def test_flac_44k_stereo_to_16k_mono(fixtures_dir: Path, jfk16: np.ndarray) -> None:
    assert jfk16.dtype == np.float32 and jfk16.ndim == 1
    assert len(jfk16) == 11 * SAMPLE_RATE
    assert -1.0 <= jfk16.min() and jfk16.max() <= 1.0
    assert np.sqrt(np.mean(jfk16**2)) > 0.01  # speech, not silence
    assert probe_duration(fixtures_dir / "jfk.flac", "jfk") == pytest.approx(11.0)


def test_16k_mono_wav_is_passed_through_exactly(fixtures_dir: Path) -> None:
    wave = decode_to_16k_mono(fixtures_dir / "sample.wav", "sample")
    ref, sr = sf.read(fixtures_dir / "sample.wav", dtype="float32")
    assert sr == SAMPLE_RATE and len(wave) == len(ref) == 30 * SAMPLE_RATE
    np.testing.assert_allclose(wave, ref, atol=1e-6)


@pytest.mark.parametrize(
    ("codec", "suffix", "container", "rate"),
    [("libopus", ".webm", "webm", 48_000), ("aac", ".m4a", "mp4", 44_100)],
    ids=["opus-webm", "aac-m4a"],
)
def test_youtube_like_lossy_formats(tmp_path: Path, jfk16: np.ndarray, codec: str, suffix: str,
                                    container: str, rate: int) -> None:
    path = encode_audio(jfk16, SAMPLE_RATE, tmp_path / f"talk{suffix}", codec, rate=rate,
                        container_format=container)
    wave = decode_to_16k_mono(path, "talk")
    assert wave.dtype == np.float32
    assert len(wave) / SAMPLE_RATE == pytest.approx(11.0, abs=0.1)
    rms = float(np.sqrt(np.mean(wave**2)))
    assert rms == pytest.approx(float(np.sqrt(np.mean(jfk16**2))), rel=0.2)  # the same speech, lossy


def _truncated_flac(fixtures_dir: Path, tmp_path: Path) -> Path:
    data = (fixtures_dir / "jfk.flac").read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_wav(fixtures_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "cut.wav"
    path.write_bytes((fixtures_dir / "sample.wav").read_bytes()[:300_000])
    return path


def _corrupt_flac(fixtures_dir: Path, tmp_path: Path) -> Path:
    data = bytearray((fixtures_dir / "jfk.flac").read_bytes())
    data[200_000:600_000] = bytes(400_000)  # a zeroed hole in the middle
    path = tmp_path / "hole.flac"
    path.write_bytes(bytes(data))
    return path


def _write(name: str, content: bytes):
    def make(fixtures_dir: Path, tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return make


@pytest.mark.parametrize(
    ("make", "cause"),
    [
        (_write("empty.m4a", b""), "empty file"),
        (_write("page.webm", b"<!DOCTYPE html>\n<html><head><title>Watch</title></head><body></body></html>"),
         "HTML page"),
        (_write("notes.mp3", b"These are the show notes, not audio.\n" * 20), "text file"),
        (_write("noise.bin", bytes(range(256)) * 64), "not a readable media file"),
        (lambda fx, tmp: make_video_only(tmp / "video.mkv"), "no audio stream"),
        (_truncated_flac, "truncated"),
        (_truncated_wav, "truncated WAV"),
        (_corrupt_flac, "truncated or corrupt"),
    ],
    ids=["empty", "html", "text", "binary-junk", "video-only", "truncated-flac", "truncated-wav", "corrupt-flac"],
)
def test_bad_media_names_video_and_cause(fixtures_dir: Path, tmp_path: Path, make, cause: str) -> None:
    path = make(fixtures_dir, tmp_path)
    with pytest.raises(DecodeError) as err:
        decode_to_16k_mono(path, "bad-video_1")
    assert err.value.video_id == "bad-video_1"
    assert "video bad-video_1" in str(err.value)
    assert cause in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="not found"):
        decode_to_16k_mono(tmp_path / "nope.flac", "v")


@pytest.mark.parametrize(
    "head",
    [b"fLaC\x00\x00\x00\x22", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"ID3\x04\x00\x00\x00\x00\x00\x23",
     b"OggS\x00\x02", b"\xff\xfb\x90\x64\x00", b"\x1aE\xdf\xa3\x9fB\x86\x81", b"\x00\x00\x00\x20ftypM4A "],
    ids=["flac", "wav", "mp3-id3", "ogg", "mp3", "webm", "m4a"],
)
def test_sniff_accepts_media_heads(head: bytes) -> None:
    assert sniff_non_media(head) is None


def test_a_clip_window_is_the_same_samples_as_the_whole_decode(fixtures_dir: Path) -> None:
    """One decoder for talks and for enrolment clips: [start, end] of it equals that slice of the
    whole file, and a 16 kHz WAV comes through sample-exact (soundfile reads the same window)."""
    whole = decode_to_16k_mono(fixtures_dir / "sample.wav", "sample")
    clip = decode_to_16k_mono(fixtures_dir / "sample.wav", "sample", start=10.0, end=12.0)
    assert len(clip) == 32_000 and np.array_equal(clip, whole[160_000:192_000])
    ref, _ = sf.read(fixtures_dir / "sample.wav", start=160_000, stop=192_000, dtype="float32")
    np.testing.assert_allclose(clip, ref, atol=1e-4)
    tail = decode_to_16k_mono(fixtures_dir / "jfk.flac", "jfk", start=9.0)
    assert abs(len(tail) / 16_000 - 2.0) < 0.01


def test_decoding_into_flac_stores_the_samples_the_array_path_stores(fixtures_dir, tmp_path):
    """The stream straight into the stored FLAC (nothing held in memory) gives bit for bit what
    decoding to an array and storing it gives; a failed write leaves nothing in the store."""
    import soundfile as sf

    from chaffee_assets.lib.artifacts import ArtifactStore, read_waveform
    from chaffee_assets.lib.media.decode import decode_to_16k_mono, decode_to_flac

    store = ArtifactStore(str(tmp_path / "store"))
    src = fixtures_dir / "jfk.flac"
    via_array = read_waveform(store.save_waveform("audio", "by-array", decode_to_16k_mono(src, "jfk")))
    with store.writing_waveform("audio", "streamed") as (flac, url):
        seconds = decode_to_flac(src, "jfk", flac)
    streamed = read_waveform(url)
    assert abs(seconds - len(via_array) / 16_000) < 1e-9 and sf.info(url).subtype == "PCM_16"
    np.testing.assert_array_equal(streamed, via_array)

    with pytest.raises(DecodeError), store.writing_waveform("audio", "broken") as (flac, _):
        bad = tmp_path / "not-media.m4a"
        bad.write_bytes(b"<html>not media</html>")
        decode_to_flac(bad, "broken", flac)
    assert not store.has_waveform("audio", "broken")
    assert sorted(p.name for p in (tmp_path / "store" / "audio").iterdir()) == ["by-array.flac", "streamed.flac"]
