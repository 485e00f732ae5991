"""Shared fixtures: a real embedded Postgres for the session, a fresh migrated database per test,
the real speech the project ships (chaffee_assets/testing/data)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    from chaffee_assets.testing import fixtures_dir

    return fixtures_dir()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """One embedded Postgres (with pgvector) for the whole test session."""
    from chaffee_assets.lib import pg

    data_dir = tmp_path_factory.mktemp("pgdata")
    info = pg.start(data_dir)
    yield info
    pg.stop(data_dir)


@pytest.fixture
def archive_url(pg_server) -> str:
    """A fresh, migrated archive database for one test."""
    from chaffee_assets.lib import db

    name = f"t_{uuid.uuid4().hex[:12]}"
    db.ensure_database(pg_server.url(), name)
    url = pg_server.url(name)
    db.migrate(url)
    return url
