"""Real yt-dlp downloads of fixture media from a loopback HTTP server, local files, and the
failures: each names the video and the cause; only transient ones are retried."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chaffee_assets.lib.errors import DecodeError, DownloadError, InvalidVideoId
from chaffee_assets.lib.media import download
from chaffee_assets.lib.media.download import fetch_audio
from chaffee_assets.lib.types import SAMPLE_RATE
from tests.helpers.media_server import MediaServer, make_video_only

JFK_BYTES = 1_152_693


@pytest.fixture
def server() -> Iterator[MediaServer]:
    with MediaServer() as srv:
        yield srv


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff delays asked for, without waiting them out (only the download's own wait is
    replaced: a global `time.sleep` patch would also record, and busy-loop, any other thread's)."""
    delays: list[float] = []
    monkeypatch.setattr(download, "_backoff", delays.append)
    return delays


def _statuses(srv: MediaServer, path: str) -> list[int]:
    return [r.status for r in srv.requests if r.path == path]


def test_http_media_download(server: MediaServer, fixtures_dir: Path, tmp_path: Path) -> None:
    url = server.add_file("/talks/jfk.flac", fixtures_dir / "jfk.flac", "audio/flac")
    audio = fetch_audio(url, "jfk-1", tmp_path / "work")
    assert audio.waveform.dtype == np.float32 and audio.waveform.ndim == 1
    assert len(audio.waveform) == 11 * SAMPLE_RATE
    meta = audio.meta
    assert (meta.video_id, meta.title, meta.source_url) == ("jfk-1", "jfk", url)
    assert meta.duration_s == pytest.approx(11.0) and meta.size_bytes == JFK_BYTES
    assert list((tmp_path / "work").iterdir()) == []  # the download is removed
    assert _statuses(server, "/talks/jfk.flac") == [200, 200]  # extraction probe + download


def test_caller_metadata_wins(server: MediaServer, fixtures_dir: Path, tmp_path: Path) -> None:
    url = server.add_file("/sample.wav", fixtures_dir / "sample.wav", "audio/wav")
    audio = fetch_audio(url, "interview", tmp_path, title="An interview", upload_date="2024-01-04")
    assert (audio.meta.title, audio.meta.upload_date) == ("An interview", "2024-01-04")
    assert audio.seconds == pytest.approx(30.0)


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_local_file(fixtures_dir: Path, tmp_path: Path, as_url: bool) -> None:
    src = fixtures_dir / "sample.wav"
    audio = fetch_audio(src.as_uri() if as_url else str(src), "sample", tmp_path, allow_local=True)
    assert audio.seconds == pytest.approx(30.0)
    assert audio.meta.source_url == src.resolve().as_uri()
    assert (audio.meta.title, audio.meta.size_bytes) == ("sample", 960_104)
    assert src.is_file()  # a local source is read, never removed


def test_missing_local_file(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"video gone: local file not found"):
        fetch_audio(str(tmp_path / "nope.flac"), "gone", tmp_path, allow_local=True)


def test_404_is_permanent_and_not_retried(server: MediaServer, tmp_path: Path, sleeps: list[float]) -> None:
    with pytest.raises(DownloadError) as err:
        fetch_audio(server.url("/missing.flac"), "vid404", tmp_path, retries=3)
    assert not err.value.transient
    assert "video vid404" in str(err.value) and "HTTP 404" in str(err.value)
    assert server.count("/missing.flac") == 1 and sleeps == []


@pytest.mark.parametrize("status", [410, 403])
def test_other_client_errors_are_permanent(server: MediaServer, fixtures_dir: Path, tmp_path: Path,
                                           sleeps: list[float], status: int) -> None:
    url = server.add_file("/x.flac", fixtures_dir / "jfk.flac", "audio/flac", fail_first=[status] * 5)
    with pytest.raises(DownloadError, match=f"video gone: HTTP {status}") as err:
        fetch_audio(url, "gone", tmp_path, retries=3)
    assert not err.value.transient and server.count("/x.flac") == 1 and sleeps == []


@pytest.mark.parametrize("fail_first", [[503], [200, 503], [429]], ids=["probe-503", "download-503", "429"])
def test_503_once_is_retried(server: MediaServer, fixtures_dir: Path, tmp_path: Path, sleeps: list[float],
                             fail_first: list[int]) -> None:
    url = server.add_file("/jfk.flac", fixtures_dir / "jfk.flac", "audio/flac", fail_first=fail_first)
    audio = fetch_audio(url, "flaky", tmp_path, retries=3, backoff_s=0.5)
    assert audio.seconds == pytest.approx(11.0)
    assert _statuses(server, "/jfk.flac").count(fail_first[-1]) == 1
    assert sleeps == [0.5]


def test_persistent_503_gives_up_with_backoff(server: MediaServer, fixtures_dir: Path, tmp_path: Path,
                                              sleeps: list[float]) -> None:
    server.add_file("/down.flac", fixtures_dir / "jfk.flac", "audio/flac", fail_first=[503] * 10)
    with pytest.raises(DownloadError) as err:
        fetch_audio(server.url("/down.flac"), "down", tmp_path, retries=2, backoff_s=1.0)
    assert err.value.transient and "gave up after 3 attempts" in str(err.value)
    assert server.count("/down.flac") == 3 and sleeps == [1.0, 2.0]


def test_connection_refused_is_transient(tmp_path: Path, sleeps: list[float]) -> None:
    with MediaServer() as srv:
        url = srv.url("/gone.flac")  # the port is closed once the server stops
    with pytest.raises(DownloadError) as err:
        fetch_audio(url, "offline", tmp_path, retries=1)
    assert err.value.transient and "network error" in str(err.value) and sleeps == [1.0]


def test_html_page_is_permanent(server: MediaServer, tmp_path: Path, sleeps: list[float]) -> None:
    url = server.add("/watch", b"<!DOCTYPE html><html><body><p>Sign in</p></body></html>", "text/html")
    with pytest.raises(DownloadError) as err:
        fetch_audio(url, "page", tmp_path)
    assert not err.value.transient and "web page (HTML)" in str(err.value) and "video page" in str(err.value)
    assert server.count("/watch") == 1 and sleeps == []


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"<html><body>Error: quota exceeded</body></html>", "HTML page"),  # HTML labelled as audio
        (b"", "empty file"),
        (b"plain text, no audio\n" * 30, "text file"),
    ],
    ids=["html-as-audio", "empty", "text"],
)
def test_non_media_served_as_audio(server: MediaServer, tmp_path: Path, body: bytes, cause: str) -> None:
    url = server.add("/ep.mp3", body, "audio/mpeg")
    with pytest.raises(DecodeError) as err:
        fetch_audio(url, "ep7", tmp_path)
    assert "video ep7" in str(err.value) and cause in str(err.value) and url in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_truncated_media(server: MediaServer, fixtures_dir: Path, tmp_path: Path) -> None:
    data = (fixtures_dir / "jfk.flac").read_bytes()
    url = server.add("/cut.flac", data[: len(data) // 3], "audio/flac")
    with pytest.raises(DecodeError, match=r"video cut: truncated or corrupt media: decoded [\d.]+ s of the 11.0 s"):
        fetch_audio(url, "cut", tmp_path)


def test_no_audio_stream(server: MediaServer, tmp_path: Path) -> None:
    url = server.add_file("/clip.mkv", make_video_only(tmp_path / "clip.mkv"), "video/x-matroska")
    with pytest.raises(DecodeError, match=r"video clip: no audio stream .*\(streams: video\)"):
        fetch_audio(url, "clip", tmp_path / "work")


def test_feed_url_is_not_one_video(server: MediaServer, tmp_path: Path) -> None:
    rss = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>c</title><item><title>a</title>'
           b'<guid>a</guid><enclosure url="http://127.0.0.1:1/a.flac" type="audio/flac"/></item></channel></rss>')
    url = server.add("/feed.rss", rss, "application/rss+xml")
    with pytest.raises(DownloadError, match="playlist or feed, not one video"):
        fetch_audio(url, "feedvid", tmp_path)


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "a;rm -rf x", "", "x" * 65, "a b", "$(touch p)"])
def test_bad_ids_rejected_before_any_path(server: MediaServer, fixtures_dir: Path, tmp_path: Path,
                                          bad_id: str) -> None:
    url = server.add_file("/jfk.flac", fixtures_dir / "jfk.flac", "audio/flac")
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    for source in (url, str(fixtures_dir / "jfk.flac")):
        with pytest.raises(InvalidVideoId):
            fetch_audio(source, bad_id, tmp_path / "work")
    assert not (tmp_path / "work").exists() and list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before
    assert server.requests == []


def test_youtube_url_goes_to_youtube_extractor_canonically(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """Offline: the YouTube extractor is chosen for the canonical watch URL, and a private video
    (yt-dlp's expected ExtractorError) is a permanent failure."""
    import yt_dlp

    seen: dict[str, object] = {}

    def fake_extract(self, url, download=True, process=True, **kw):  # noqa: ANN001
        seen["url"], seen["params"] = url, self.params
        seen["ie"] = next(ie.ie_key() for ie in self._ies.values() if ie.suitable(url))
        err = yt_dlp.utils.ExtractorError("Private video. Sign in if you've been granted access", expected=True)
        raise yt_dlp.utils.DownloadError(f"ERROR: [youtube] dQw4w9WgXcQ: {err.orig_msg}", (type(err), err, None))

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", fake_extract)
    with pytest.raises(DownloadError) as err:
        fetch_audio("https://youtu.be/dQw4w9WgXcQ?t=42", "dQw4w9WgXcQ", tmp_path, retries=3)
    assert seen["url"] == "https://www.youtube.com/watch?v=dQw4w9WgXcQ" and seen["ie"] == "Youtube"
    params = seen["params"]
    assert isinstance(params, dict) and not params.get("force_generic_extractor")
    assert not err.value.transient and "Private video" in str(err.value)


@pytest.mark.parametrize("source", ["/etc/passwd", "file:///etc/hostname", "/no/such/file.flac", "file:///no/such.m4a"])
def test_a_local_file_is_refused_unless_named_on_the_command_line(tmp_path: Path, source: str) -> None:
    """From a feed, a channel or the sensor, a local path is refused before it is touched, with the
    same words whether it exists or not."""
    with pytest.raises(DownloadError) as refused:
        fetch_audio(source, "from-a-feed", tmp_path)
    assert "refused: local files are read only when named on the command line" in str(refused.value)
    assert "not found" not in str(refused.value) and "/etc" not in str(refused.value)


@pytest.mark.parametrize("source", ["ftp://127.0.0.1/a.mp3", "rtmp://127.0.0.1/live", "gopher://x/y", "data:audio/wav;base64,AAAA"])
def test_other_schemes_are_refused_before_any_request(tmp_path: Path, source: str) -> None:
    with pytest.raises(DownloadError, match="refused"):
        fetch_audio(source, "odd", tmp_path, allow_local=True)


def test_a_trickling_server_fails_by_the_deadline(server: MediaServer, fixtures_dir: Path, tmp_path: Path) -> None:
    """1 KiB every second: each chunk keeps the socket alive, the overall deadline ends it."""
    url = server.add_file("/slow.flac", fixtures_dir / "jfk.flac", "audio/flac", trickle=(1024, 1.0))
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"video slow: download not finished after 3 s"):
        fetch_audio(url, "slow", tmp_path / "work", retries=0, deadline_s=3.0)
    assert time.monotonic() - t0 < 20
    assert not any((tmp_path / "work").iterdir())  # nothing partial left


def test_a_download_over_the_size_cap_fails(server: MediaServer, fixtures_dir: Path, tmp_path: Path) -> None:
    url = server.add_file("/big.flac", fixtures_dir / "jfk.flac", "audio/flac")
    with pytest.raises(DownloadError, match=r"video big: download larger than the 0.1 MiB allowed"):
        fetch_audio(url, "big", tmp_path / "work", retries=0, max_bytes=100_000)
    assert not any((tmp_path / "work").iterdir())
