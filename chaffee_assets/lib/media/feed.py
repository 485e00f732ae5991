"""List a channel's videos, oldest first: a YouTube channel, or an RSS 2.0 feed (http or file://).

yt-dlp's flat playlist extraction reads both. For an RSS feed its generic extractor gives one
`url_transparent` entry per `<item>`: the `<enclosure>` URL (or `<link>`), with the `<guid>`
smuggled into the URL's fragment as `force_videoid`, the title, and `<pubDate>` as a timestamp;
the entry itself has no `id`. We unsmuggle the guid, and resolve a relative enclosure against the
feed's URL (yt-dlp leaves it as written). Remote ids are used only when they are valid video ids;
anything else gets a stable hash-based id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from chaffee_assets.lib.errors import FeedError
from chaffee_assets.lib.ids import (
    id_for_url,
    is_valid_video_id,
    youtube_host,
    youtube_id,
    youtube_watch_url,
)
from chaffee_assets.lib.media.download import upload_date_of
from chaffee_assets.lib.media.fetch import SourceRefused, check_source, fetch_bounded
from chaffee_assets.lib.media.ytdlp import YtdlpLogger
from chaffee_assets.lib.types import Source

log = logging.getLogger(__name__)

LISTING_DEADLINE_S = 120.0  # a feed or a channel's page: seconds to list it in
LISTING_MAX_BYTES = 50 << 20  # a 3 000-item feed is a few MB





def list_channel(url: str, deadline_s: float = LISTING_DEADLINE_S, max_bytes: int = LISTING_MAX_BYTES) -> list[Source]:
    """Every video of the channel or feed at `url` (a local feed file's path works too), oldest first.

    A feed served over http(s) is fetched within `deadline_s` and `max_bytes` (a stalled or
    trickling server fails the listing); every entry must point at http(s) media: an entry naming a
    local file (file://) or another scheme is refused and skipped, the others are listed."""
    url = _as_url(url)
    with tempfile.TemporaryDirectory(prefix="chaffee-feed-") as tmp:
        info = _extract_flat(_prefetched(url, Path(tmp), deadline_s, max_bytes), shown=url)
    raw = [e for e in info.get("entries") or [] if e]
    entries: list[Source] = []
    stamps: list[float | None] = []
    seen: set[str] = set()
    nested = 0
    for e in raw:
        if _is_nested_playlist(e):
            nested += 1
            continue
        entry, stamp = _entry(e, url)
        try:
            check_source(entry.url, allow_local=False)
        except SourceRefused as refused:
            log.warning("feed %s: entry %s (%r) %s", url, entry.video_id, entry.title, refused)
            continue
        if entry.video_id in seen:
            log.warning("feed %s: duplicate entry %s (%s) ignored", url, entry.video_id, entry.url)
            continue
        seen.add(entry.video_id)
        entries.append(entry)
        stamps.append(stamp)
    if nested:
        if not entries:
            raise FeedError(f"{url} lists playlists or channel tabs, not videos: use the channel's /videos URL")
        log.warning("feed %s: %d nested playlists skipped", url, nested)
    ordered = _oldest_first(entries, stamps)
    log.info("feed %s: %d videos", url, len(ordered))
    return ordered


def _as_url(url: str) -> str:
    if "://" in url:
        return url
    path = Path(url).expanduser()
    if path.is_file():
        return path.resolve().as_uri()
    raise FeedError(f"not a URL, nor an existing feed file: {url!r}")


def _prefetched(url: str, folder: Path, deadline_s: float, max_bytes: int) -> str:
    """What yt-dlp lists: an http(s) feed fetched here within the bounds (yt-dlp reads the copy; the
    entries' relative URLs are resolved against the feed's own URL), else `url` itself (a local
    feed, or a YouTube channel: yt-dlp's YouTube extractor asks YouTube itself)."""
    if urlparse(url).scheme not in ("http", "https") or youtube_host(url):
        return url
    target = folder / "feed.xml"
    try:
        fetch_bounded(url, target, deadline_s, max_bytes)
    except (TimeoutError, OverflowError) as e:
        raise FeedError(f"cannot list {url}: the feed {e}") from None
    except OSError as e:
        raise FeedError(f"cannot list {url}: {_network_cause(e)}") from None
    return target.resolve().as_uri()


def _network_cause(e: OSError) -> str:
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    reason = getattr(e, "reason", None)
    return f"network error: {reason or e}"


def _extract_flat(url: str, shown: str | None = None) -> dict[str, Any]:
    """yt-dlp's flat listing of `url`; messages name `shown` (the feed's own URL, for a copy)."""
    shown = shown or url
    import yt_dlp

    opts = {
        "extract_flat": "in_playlist",
        "skip_download": True,
        "enable_file_urls": True,
        "quiet": True,
        "no_warnings": False,
        "logger": YtdlpLogger(f"feed {shown}"),
        "socket_timeout": 30,
        "default_search": "error",  # never turn a bad URL into a YouTube search
    }
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(url, download=False)
    except yt_dlp.utils.DownloadError as e:
        msg = str(e).removeprefix("ERROR: ").strip()
        if "Unsupported URL" in msg:
            msg = "no feed or channel found there (malformed feed, or a page yt-dlp cannot read)"
        raise FeedError(f"cannot list {shown}: {msg}") from e
    if not isinstance(info, dict) or info.get("_type") not in ("playlist", "multi_video"):
        raise FeedError(f"cannot list {shown}: not a feed or channel "
                        "(it is a single media item, or a malformed feed)")
    return info


def _is_nested_playlist(e: dict[str, Any]) -> bool:
    return e.get("_type") == "playlist" or e.get("ie_key") in ("YoutubeTab", "YoutubePlaylist")


def _entry(e: dict[str, Any], feed_url: str) -> tuple[Source, float | None]:
    """One flat entry as a Source, plus its timestamp (for ordering) when known."""
    from yt_dlp.utils import unsmuggle_url

    raw_url, smuggled = unsmuggle_url(str(e.get("url") or ""), {})
    guid = smuggled.get("force_videoid")
    url = urljoin(feed_url, raw_url) if raw_url and not urlparse(raw_url).scheme else raw_url
    yid = youtube_id(url) if url else None
    if e.get("ie_key") == "Youtube" and is_valid_video_id(str(e.get("id") or "")):
        yid = str(e["id"])
    if yid:
        video_id, url = yid, youtube_watch_url(yid)
    else:
        remote_id = e.get("id") if e.get("id") is not None else guid
        if isinstance(remote_id, str) and is_valid_video_id(remote_id):
            video_id = remote_id
        elif remote_id:
            video_id = _hashed_id(str(remote_id))
        elif url:
            video_id = id_for_url(url)
        else:
            raise FeedError(f"{feed_url}: an entry has neither a URL nor an id: {e.get('title')!r}")
    if not url:
        raise FeedError(f"{feed_url}: entry {video_id} has no media URL (no enclosure or link)")
    stamps = (e.get(k) for k in ("timestamp", "release_timestamp"))
    stamp = next((float(v) for v in stamps if isinstance(v, int | float)), None)
    date = upload_date_of(e)
    if stamp is None and date:
        stamp = dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC).timestamp()
    title = str(e.get("title") or "").strip() or video_id
    return Source(video_id=video_id, url=url, title=title, upload_date=date), stamp


def _hashed_id(remote_id: str) -> str:
    """A stable valid id for a guid that is not one (a permalink URL, a path, free text)."""
    if "://" in remote_id:
        return id_for_url(remote_id)
    return "g" + hashlib.sha1(remote_id.encode()).hexdigest()[:15]


def _oldest_first(entries: list[Source], stamps: list[float | None]) -> list[Source]:
    """By date when every entry has one (ties: feed order reversed), else the feed order reversed:
    feeds and channel pages list newest first."""
    order = list(range(len(entries)))[::-1]
    if entries and all(s is not None for s in stamps):
        order.sort(key=lambda i: stamps[i])  # stable: keeps reversed feed order within a tie
    return [entries[i] for i in order]
