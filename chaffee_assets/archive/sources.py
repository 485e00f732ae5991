"""The registry of video sources: which URL or file each video id (partition key) comes from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from chaffee_assets.lib.errors import SourceConflict
from chaffee_assets.lib.ids import validate_video_id, youtube_id, youtube_watch_url
from chaffee_assets.lib.types import Source


def _date(s: str | None) -> date | None:
    if not s:
        return None
    s = s.replace("-", "")
    return date(int(s[:4]), int(s[4:6]), int(s[6:8])) if len(s) == 8 and s.isdigit() else None


def canonical_url(url: str) -> str:
    """A source's URL as it is compared: without its fragment, scheme and host in lower case; a
    local path as its file:// URL."""
    if "://" not in url:
        return Path(url).expanduser().resolve().as_uri()
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


def register(conn: psycopg.Connection, items: Iterable[Source]) -> list[Source]:
    """Record where each video comes from; returns the sources as stored, in order.

    One video, one id: a source whose URL is already registered under another id (the same media
    reached through a feed and by its direct URL) takes that id; an id already registered for
    another URL is refused (`SourceConflict`, naming both), never re-pointed. A YouTube video is
    one id however it is reached. Re-registering a source updates its title and date."""
    stored: list[Source] = []
    with conn.transaction():
        for item in items:
            item = _known_by_url(conn, item)
            row = conn.execute("SELECT source_url FROM video_sources WHERE video_id = %s",
                               (validate_video_id(item.video_id),)).fetchone()
            if row is not None and canonical_url(row[0]) != canonical_url(item.url) and not youtube_id(item.url):
                raise SourceConflict(
                    f"video id {item.video_id} already belongs to {row[0]}; refusing {item.url} under the same id"
                )
            conn.execute(
                """INSERT INTO video_sources (video_id, source_url, title, upload_date, origin) VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (video_id) DO UPDATE SET
                       title = COALESCE(EXCLUDED.title, video_sources.title),
                       upload_date = COALESCE(EXCLUDED.upload_date, video_sources.upload_date),
                       origin = CASE WHEN EXCLUDED.origin = 'cli' THEN 'cli' ELSE video_sources.origin END""",
                (item.video_id, item.url, item.title, _date(item.upload_date), item.origin),
            )
            stored.append(item)
    return stored


def _known_by_url(conn: psycopg.Connection, item: Source) -> Source:
    rows = conn.execute(
        "SELECT video_id, source_url FROM video_sources WHERE source_url = %s OR source_url = %s",
        (item.url, canonical_url(item.url)),
    ).fetchall()
    for video_id, url in rows:
        if video_id != item.video_id and canonical_url(url) == canonical_url(item.url):
            return replace(item, video_id=video_id)
    return item


def lookup(conn: psycopg.Connection, video_id: str) -> Source | None:
    validate_video_id(video_id)
    row = conn.execute(
        "SELECT source_url, title, upload_date, origin FROM video_sources WHERE video_id = %s", (video_id,)
    ).fetchone()
    if row is None:
        return None
    return Source(video_id, row[0], row[1], row[2].isoformat() if row[2] else None, row[3])


def source_url_for(conn: psycopg.Connection, video_id: str) -> str | None:
    """The registered URL; for an unregistered YouTube-shaped id (a partition added by hand in the
    UI), its watch URL; else None."""
    src = lookup(conn, video_id)
    if src is not None:
        return src.url
    url = youtube_watch_url(video_id)
    if len(video_id) == 11 and youtube_id(url) == video_id:
        return url
    return None
