"""Fetch one video's audio: yt-dlp for anything remote, direct reads for local files.

`fetch_audio` validates the video id before anything else, downloads into a private folder inside
`workdir` named from that id alone (nothing from remote metadata reaches a path), decodes to
16 kHz mono and removes what it downloaded. Transient failures (timeouts, resets, HTTP 5xx/429)
are retried with exponential backoff; permanent ones (404/410, unsupported URL, private or removed
video, a web page instead of media) fail at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from chaffee_assets.lib.errors import DecodeError, DownloadError
from chaffee_assets.lib.ids import validate_video_id, youtube_id, youtube_watch_url
from chaffee_assets.lib.media.decode import decode_to_16k_mono, decode_to_flac
from chaffee_assets.lib.media.fetch import Bounds, SourceRefused, check_source
from chaffee_assets.lib.media.ytdlp import YtdlpLogger
from chaffee_assets.lib.types import SAMPLE_RATE, Audio, VideoMeta

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 3600.0  # a 1.5 h talk's audio is ~60-100 MB: an hour allows ~30 KB/s
DEFAULT_MAX_BYTES = 3 << 30  # bestaudio is small; a fallback to a whole video file stays bounded


class BoundsExceeded(DownloadError):
    """The download outgrew its deadline or size cap (permanent: asking again would too)."""


_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
_TRANSIENT_WORDS = ("timed out", "timeout", "connection reset", "connection refused", "connection aborted",
                    "temporarily", "try again later", "incomplete read", "remote end closed")


def fetch_audio(
    source: str,
    video_id: str,
    workdir: Path,
    retries: int = 3,
    backoff_s: float = 1.0,
    *,
    title: str | None = None,
    upload_date: str | None = None,
    allow_local: bool = False,
    deadline_s: float = DEFAULT_DEADLINE_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Audio:
    """Download (or read) `source` and decode it to 16 kHz mono.

    `source`: a YouTube watch/short URL, any http(s) URL yt-dlp reads (a media file, a feed entry's
    enclosure), or, with `allow_local` (the user named it on the command line), a file:// URL or a
    local path; anything else is refused before any request (`media.fetch.check_source`).
    `retries`: further attempts after the first, for transient errors only, waiting `backoff_s`,
    2x, 4x… between them, all within `deadline_s` and `max_bytes` (a stalled or trickling server
    fails the video). `title` / `upload_date` (ISO), when the caller knows them (a feed entry),
    override what the download reports.
    """
    got: list = []  # the waveform

    def decode(path: Path) -> float:
        got.append(decode_to_16k_mono(path, video_id))
        return len(got[0]) / SAMPLE_RATE

    meta = _fetch(source, video_id, workdir, retries, backoff_s, decode, title=title, upload_date=upload_date,
                  allow_local=allow_local, deadline_s=deadline_s, max_bytes=max_bytes)
    return Audio(meta=meta, waveform=got[0])


def fetch_audio_file(source: str, video_id: str, workdir: Path, out: Path, retries: int = 3, backoff_s: float = 1.0,
                     **options: Any) -> VideoMeta:
    """`fetch_audio`, decoded into the 16-bit FLAC file `out` as it is read: the talk is never
    held in memory (a 1.5 h talk: ~350 MB as an array), whatever its length. Same options."""

    def decode(path: Path) -> float:
        return decode_to_flac(path, video_id, out)

    return _fetch(source, video_id, workdir, retries, backoff_s, decode, **options)


def _fetch(source: str, video_id: str, workdir: Path, retries: int, backoff_s: float, decode: Callable[[Path], float], *,
           title: str | None = None, upload_date: str | None = None, allow_local: bool = False,
           deadline_s: float = DEFAULT_DEADLINE_S, max_bytes: int = DEFAULT_MAX_BYTES) -> VideoMeta:
    validate_video_id(video_id)
    try:
        check_source(source, allow_local)
    except SourceRefused as e:
        raise DownloadError(video_id, str(e)) from None
    local = local_path(source, video_id)
    if local is not None:
        return _read_local(local, video_id, title, upload_date, decode)
    yid = youtube_id(source)
    url = youtube_watch_url(yid) if yid else source
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{video_id}.", suffix=".dl", dir=workdir))
    try:
        target = tmp / f"{video_id}.media"
        info = _download_with_retries(url, video_id, target, retries, backoff_s, Bounds(deadline_s, max_bytes))
        size = target.stat().st_size
        try:
            seconds = decode(target)
        except DecodeError as e:
            raise DecodeError(video_id, f"{e.cause} (downloaded from {url})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta = VideoMeta(
        video_id=video_id,
        title=title or _str(info.get("title")) or video_id,
        source_url=url if yid else _clean_url(url),
        upload_date=upload_date or upload_date_of(info),
        duration_s=seconds,
        size_bytes=size,
        channel=_str(info.get("channel")) or _str(info.get("uploader")),
        listed_s=_seconds(info.get("duration")),
    )
    log.info("video %s: fetched %.1f s of audio (%d bytes) from %s", video_id, meta.duration_s, size,
             meta.source_url)
    return meta


def _seconds(value: object) -> float:
    try:
        return max(0.0, float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


# -- local files --------------------------------------------------------------------------------
def local_path(source: str, video_id: str) -> Path | None:
    """The path a file:// URL or a plain path names; None for anything remote."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise DownloadError(video_id, f"file URL on another host is not supported: {source}")
        return Path(url2pathname(parsed.path))
    if "://" in source:
        return None
    return Path(source).expanduser()


def _read_local(path: Path, video_id: str, title: str | None, upload_date: str | None,
                decode: Callable[[Path], float]) -> VideoMeta:
    if not path.is_file():
        raise DownloadError(video_id, f"local file not found: {path}")
    seconds = decode(path)
    meta = VideoMeta(
        video_id=video_id,
        title=title or path.stem,
        source_url=path.resolve().as_uri(),
        upload_date=upload_date,
        duration_s=seconds,
        size_bytes=path.stat().st_size,
    )
    log.info("video %s: read %.1f s of audio from %s", video_id, meta.duration_s, path)
    return meta


# -- yt-dlp -------------------------------------------------------------------------------------


def ydl_options(video_id: str, target: Path, bounds: Bounds | None = None) -> dict[str, Any]:
    """yt-dlp options for one plain audio download to `target` (a path we built), within `bounds`."""
    import imageio_ffmpeg

    bounds = bounds or Bounds(DEFAULT_DEADLINE_S, DEFAULT_MAX_BYTES)
    return {
        "progress_hooks": [_within(bounds, video_id)],
        "format": "bestaudio/best",
        "outtmpl": {"default": target.name},  # the validated id: no remote field, no %(...)s
        "paths": {"home": str(target.parent), "temp": str(target.parent)},
        "noplaylist": True,
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "logger": YtdlpLogger(f"video {video_id}"),
        "ffmpeg_location": imageio_ffmpeg.get_ffmpeg_exe(),
        "fixup": "never",  # PyAV reads DASH m4a / webm as they come; no ffmpeg rewrite
        "retries": 0,  # whole-request retries are ours (counted, with backoff); a .part file resumes
        "fragment_retries": 3,
        "extractor_retries": 1,
        "skip_unavailable_fragments": False,  # a hole in the audio is an error, not a gap
        "socket_timeout": 30,
        "overwrites": True,
        # YouTube's signature challenges need a JS runtime (and the yt-dlp-ejs scripts): use any found
        "js_runtimes": {"deno": {}, "node": {}, "bun": {}, "quickjs": {}},
    }


def _within(bounds: Bounds, video_id: str):
    """A progress hook failing the download once it outgrows `bounds` (a trickle shows here: each
    chunk that arrives is reported, however slowly)."""

    def hook(d: dict) -> None:
        size = max(int(d.get("downloaded_bytes") or 0), int(d.get("total_bytes") or 0))
        try:
            bounds.check(size)
        except (TimeoutError, OverflowError) as e:
            raise BoundsExceeded(video_id, f"download {e}") from None

    return hook


def _download_with_retries(url: str, video_id: str, target: Path, retries: int, backoff_s: float, bounds: Bounds) -> dict:
    attempts = max(0, retries) + 1
    for attempt in range(1, attempts + 1):
        try:
            bounds.check(0)
            return _download_once(url, video_id, target, bounds)
        except (TimeoutError, OverflowError) as e:
            raise DownloadError(video_id, f"download {e} of {url}") from None
        except DownloadError as e:
            if not e.transient:
                raise
            if attempt == attempts:
                tries = f"gave up after {attempts} attempts" if attempts > 1 else "no retries allowed"
                raise DownloadError(video_id, f"{e.cause} ({tries})", transient=True) from e
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning("video %s: attempt %d/%d failed: %s; retrying in %.1f s", video_id, attempt,
                        attempts, e.cause, delay)
            _backoff(delay)
    raise AssertionError("unreachable")


def _backoff(delay: float) -> None:
    """The wait between attempts (its own name: the tests record the delays asked for instead of
    patching `time.sleep`, which every thread of the process shares)."""
    time.sleep(delay)


def _download_once(url: str, video_id: str, target: Path, bounds: Bounds | None = None) -> dict:
    import yt_dlp

    try:
        with yt_dlp.YoutubeDL(ydl_options(video_id, target, bounds)) as ydl:
            info = ydl.extract_info(url, download=False, process=False)
            if info.get("_type") in ("playlist", "multi_video") or "entries" in info:
                raise DownloadError(video_id, f"{url} is a playlist or feed, not one video")
            info = ydl.process_ie_result(info, download=True)
    except yt_dlp.utils.DownloadError as e:
        raise _classify(e, url, video_id) from e
    if not target.is_file():
        raise DownloadError(video_id, f"yt-dlp reported success but wrote no file for {url}")
    return info


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exception and everything it wraps (yt-dlp's exc_info / cause, Python's chaining)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        exc_info = getattr(e, "exc_info", None)
        todo += [exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None,
                 getattr(e, "cause", None), e.__cause__, e.__context__]
    return seen


def _classify(err: Exception, url: str, video_id: str) -> DownloadError | DecodeError:
    """Turn a yt-dlp error into DownloadError/DecodeError with a plain cause and a transient flag."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import ExtractorError, GeoRestrictedError, UnsupportedError

    chain = _chain(err)
    for e in chain:  # ours, raised inside yt-dlp (a progress hook): already says what happened
        if isinstance(e, DownloadError):
            return e
    msg = str(err).removeprefix("ERROR: ").strip()
    low = msg.lower()
    for e in chain:
        if isinstance(e, HTTPError):
            return _http_error(video_id, url, e.status, e.reason)
    status = re.search(r"HTTP Error (\d{3})(?::\s*([^(\n]*))?", msg)  # the download phase says it in words
    if status:
        return _http_error(video_id, url, int(status.group(1)), (status.group(2) or "").strip())
    for e in chain:
        if isinstance(e, TransportError):
            return DownloadError(video_id, f"network error for {url}: {e}", transient=True)
        if isinstance(e, UnsupportedError):
            return DownloadError(
                video_id, f"no media at {url}: it serves a web page (HTML) or a site yt-dlp does not support"
            )
        if isinstance(e, GeoRestrictedError):
            return DownloadError(video_id, f"not available in this country: {e.orig_msg}")
    if "did not get any data blocks" in low:
        return DecodeError(video_id, f"empty file: {url} sent 0 bytes")
    if "not a bot" in low or "rate-limit" in low or "rate limit" in low:
        return DownloadError(video_id, f"YouTube is rate-limiting this machine: {msg}", transient=True)
    if any(w in low for w in _TRANSIENT_WORDS):
        return DownloadError(video_id, f"network error for {url}: {msg}", transient=True)
    for e in chain:
        if isinstance(e, ExtractorError):  # private, removed, members-only, age-gated, …
            return DownloadError(video_id, f"unavailable: {e.orig_msg}")
    return DownloadError(video_id, f"download failed for {url}: {msg}")


def _http_error(video_id: str, url: str, status: int, reason: str | None) -> DownloadError:
    transient = status in _TRANSIENT_STATUS or status >= 500
    cause = f"HTTP {status} {reason}" if reason else f"HTTP {status}"
    return DownloadError(video_id, f"{cause} for {url}", transient=transient)


# -- metadata -----------------------------------------------------------------------------------
def _str(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _clean_url(url: str) -> str:
    from yt_dlp.utils import unsmuggle_url

    return unsmuggle_url(url)[0]


def upload_date_of(info: dict) -> str | None:
    """YYYY-MM-DD from yt-dlp's upload_date (YYYYMMDD) or timestamp, if either is known."""
    for key in ("upload_date", "release_date"):
        raw = info.get(key)
        if isinstance(raw, str) and len(raw) == 8 and raw.isdigit():
            return f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
    for key in ("timestamp", "release_timestamp"):
        ts = info.get(key)
        if isinstance(ts, int | float):
            return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()
    return None
