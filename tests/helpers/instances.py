"""Settings in a temporary state folder, a real Dagster instance on the embedded Postgres written the
way `chaffee up` writes it, and the demo channel served on 127.0.0.1."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

from chaffee_assets.settings import Settings


def new_database(pg_server, prefix: str = "t", migrate: bool = True) -> str:
    """A database of its own on the session's Postgres (the archive's migrations applied unless
    `migrate` is False); its URL."""
    from chaffee_assets.archive import db

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    db.ensure_database(pg_server.url(), name)
    if migrate:
        db.migrate(pg_server.url(name))
    return pg_server.url(name)


def make_settings(folder, database_url: str, **extra) -> Settings:
    voices = folder / "voices"
    voices.mkdir(exist_ok=True)
    return Settings(
        state_dir=folder / "state",
        database_url=database_url,
        whisper_model="tiny.en",
        embedding_model="minilm",
        voices_dir=voices,
        device="cpu",
        batch_size=16,
        **extra,
    )


@contextmanager
def dagster_instance(pg_server, settings: Settings):
    """DAGSTER_HOME on Postgres (a database of its own), written the way `chaffee up` writes it."""
    from dagster import DagsterInstance

    from chaffee_assets.instance.setup import write_dagster_yaml

    write_dagster_yaml(settings, new_database(pg_server, "dg", migrate=False))
    inst = DagsterInstance.from_config(str(settings.dagster_home))
    try:
        yield inst
    finally:
        inst.dispose()


@contextmanager
def served_demo_channel(folder, fixtures_dir):
    """(base_url, folder, items) of the demo channel, served on 127.0.0.1."""
    from chaffee_assets.testing.demo_channel import build_demo_media, serve, write_feed

    items = build_demo_media(fixtures_dir, folder)
    base_url, stop = serve(folder)
    write_feed(items, base_url, folder / "feed.rss")
    try:
        yield base_url, folder, items
    finally:
        stop()
