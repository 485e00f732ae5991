"""The registry of video sources: which URL or file each video id (partition key) comes from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import psycopg

from chaffee_assets.lib.ids import validate_video_id, youtube_id, youtube_watch_url
from chaffee_assets.lib.types import Source


def _date(s: str | None) -> date | None:
    if not s:
        return None
    s = s.replace("-", "")
    return date(int(s[:4]), int(s[4:6]), int(s[6:8])) if len(s) == 8 and s.isdigit() else None


def register(conn: psycopg.Connection, sources: Iterable[Source]) -> int:
    """Record (or update) where each video comes from; returns how many were written."""
    rows = [(validate_video_id(s.video_id), s.url, s.title, _date(s.upload_date)) for s in sources]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO video_sources (video_id, source_url, title, upload_date) VALUES (%s, %s, %s, %s)
               ON CONFLICT (video_id) DO UPDATE SET source_url = EXCLUDED.source_url,
                   title = COALESCE(EXCLUDED.title, video_sources.title),
                   upload_date = COALESCE(EXCLUDED.upload_date, video_sources.upload_date)""",
            rows,
        )
    return len(rows)


def lookup(conn: psycopg.Connection, video_id: str) -> Source | None:
    validate_video_id(video_id)
    row = conn.execute(
        "SELECT source_url, title, upload_date FROM video_sources WHERE video_id = %s", (video_id,)
    ).fetchone()
    if row is None:
        return None
    return Source(video_id, row[0], row[1], row[2].isoformat() if row[2] else None)


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
