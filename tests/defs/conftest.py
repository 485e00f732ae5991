"""A real Dagster instance on the embedded Postgres, project settings in a temporary state folder,
and the demo channel served on 127.0.0.1."""

from __future__ import annotations

import uuid

import pytest

from chaffee_assets.settings import Settings


@pytest.fixture
def settings(tmp_path, archive_url) -> Settings:
    voices = tmp_path / "voices"
    voices.mkdir()
    return Settings(
        state_dir=tmp_path / "state",
        database_url=archive_url,
        whisper_model="tiny.en",
        embedding_model="minilm",
        voices_dir=voices,
        device="cpu",
        batch_size=16,
    )


@pytest.fixture
def instance(pg_server, settings):
    """DAGSTER_HOME on Postgres, written the way `chaffee up` writes it."""
    from dagster import DagsterInstance

    from chaffee_assets.instance import write_dagster_yaml
    from chaffee_assets.lib import db

    name = f"dg_{uuid.uuid4().hex[:12]}"
    db.ensure_database(pg_server.url(), name)
    write_dagster_yaml(settings, pg_server.url(name))
    inst = DagsterInstance.from_config(str(settings.dagster_home))
    try:
        yield inst
    finally:
        inst.dispose()


@pytest.fixture
def demo_channel(tmp_path, fixtures_dir):
    """(base_url, folder, items) of the demo channel, served on 127.0.0.1 for one test."""
    from chaffee_assets.lib.demo_channel import build_demo_media, serve, write_feed

    folder = tmp_path / "channel"
    items = build_demo_media(fixtures_dir, folder)
    base_url, stop = serve(folder)
    write_feed(items, base_url, folder / "feed.rss")
    try:
        yield base_url, folder, items
    finally:
        stop()
