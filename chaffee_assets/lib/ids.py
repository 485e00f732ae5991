"""Video ids are partition keys, file names and SQL values: validated before any use."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from chaffee_assets.lib.errors import InvalidVideoId

_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_YOUTUBE_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}


def validate_video_id(video_id: str) -> str:
    """Return the id unchanged if it is letters, digits, `-`, `_` (1–64 chars); raise otherwise."""
    if not isinstance(video_id, str) or not _VIDEO_ID.fullmatch(video_id):
        raise InvalidVideoId(
            f"invalid video id {video_id!r}: only letters, digits, '-' and '_' (1-64 characters) are allowed"
        )
    return video_id


def is_valid_video_id(video_id: str) -> bool:
    return isinstance(video_id, str) and bool(_VIDEO_ID.fullmatch(video_id))


def youtube_host(url: str) -> bool:
    return (urlparse(url).hostname or "").lower() in _YOUTUBE_HOSTS


def youtube_id(url: str) -> str | None:
    """The 11-character id of a YouTube watch/short/youtu.be URL, else None."""
    u = urlparse(url)
    host = (u.hostname or "").lower()
    if host not in _YOUTUBE_HOSTS:
        return None
    if host == "youtu.be":
        cand = u.path.lstrip("/").split("/")[0]
    elif u.path.startswith(("/shorts/", "/live/", "/embed/")):
        cand = u.path.split("/")[2] if len(u.path.split("/")) > 2 else ""
    else:
        cand = (parse_qs(u.query).get("v") or [""])[0]
    return cand if is_valid_video_id(cand) else None


def youtube_watch_url(video_id: str, at_seconds: float | None = None) -> str:
    """The one YouTube watch-URL builder: the video, opened at `at_seconds` when given."""
    url = f"https://www.youtube.com/watch?v={video_id}"
    return url if at_seconds is None else f"{url}&t={int(max(0.0, at_seconds))}s"


def id_for_file(path: str | Path) -> str:
    """A local file's id: its name and a hash of its content (`talk-3f2a9c01d4`): two files of one
    name in different folders are two videos, the same file reached by two paths is one."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).stem).strip("-")[:40] or "file"
    return f"{stem}-{digest.hexdigest()[:10]}"


def id_for_url(url: str) -> str:
    """A stable, valid video id for a URL: YouTube's own id, else a short hash of the URL."""
    return youtube_id(url) or "u" + hashlib.sha1(url.encode()).hexdigest()[:15]
