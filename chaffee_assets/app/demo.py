"""`chaffee demo` (`make demo`): the main job on the embedded defaults, end to end.

Starts the embedded Postgres, serves a demo channel (real speech from the fixtures, as an RSS feed
on 127.0.0.1), ingests it through the Dagster pipeline, shows what was stored, a few labelled lines
and real searches."""

from __future__ import annotations

from pathlib import Path

from chaffee_assets.settings import Settings

DEMO_QUERIES = [
    "ask what you can do for your country",
    "my fellow Americans",
]


def run_demo(settings: Settings, fixtures_dir: Path | None = None) -> int:
    from chaffee_assets.app.ingest import expand, ingest, register
    from chaffee_assets.app.search import search
    from chaffee_assets.archive import db, writer
    from chaffee_assets.instance.setup import archive_url, dagster_instance, up
    from chaffee_assets.testing import fixtures_dir as packaged
    from chaffee_assets.testing.demo_channel import build_demo_media, serve, write_feed

    fixtures = fixtures_dir or packaged()
    r = up(settings)
    print(f"== database: {'embedded Postgres in ' + str(settings.pg_data_dir) if r.embedded else 'DATABASE_URL'}"
          f" (ready in {r.started_seconds:.2f} s); Dagster home {r.dagster_home}")
    print(f"== model service: Ray on {r.service_address}, models warm in {r.service_seconds:.1f} s")

    channel_dir = settings.state_path / "demo_channel"
    items = build_demo_media(fixtures, channel_dir)
    base_url, stop = serve(channel_dir)
    try:
        feed = write_feed(items, base_url, channel_dir / "feed.rss")
        feed_url = f"{base_url}/{feed.name}"
        print(f"== demo channel: {feed_url} ({len(items)} videos)")
        found = expand([feed_url])
        with dagster_instance(settings) as instance:
            found, _ = register(settings, instance, found)
        outcomes = ingest(settings, [s.video_id for s in found])
    finally:
        stop()

    failed = [o for o in outcomes if not o.ok]
    with db.connect(archive_url(settings)) as conn:
        counts = writer.counts(conn)
        print(f"== stored: {counts['videos']} videos, {counts['segments']} passages, vectors {counts.get('vectors', {})}")
        rows = conn.execute(
            """SELECT v.title, s.start_s, s.end_s, s.speaker, s.text FROM segments s JOIN videos v USING (video_id)
               WHERE s.video_id = (SELECT video_id FROM segments GROUP BY video_id ORDER BY count(DISTINCT speaker) DESC, video_id LIMIT 1)
               ORDER BY s.ordinal LIMIT 6"""
        ).fetchall()
    if rows:
        print(f"== transcript of {rows[0][0]!r}:")
        for _, start, end, speaker, text in rows:
            print(f"  [{start:6.1f}–{end:6.1f}] {speaker}: {text}")
    for q in DEMO_QUERIES:
        print(f"== search: {q!r}")
        for h in search(q, k=3, settings=settings):
            print(f"  {h.score:.3f}  {h.speaker}  {h.title!r} {h.start:.1f}–{h.end:.1f}s  {h.text}")
            print(f"         {h.url}")
    if failed:
        print(f"== {len(failed)} videos failed: " + "; ".join(f"{o.video_id}: {o.error}" for o in failed))
        return 1
    print("== demo done. Next: `.venv/bin/chaffee search \"your question\"`, or `.venv/bin/chaffee dev` for the Dagster UI")
    return 0
