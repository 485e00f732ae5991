"""Shared fixtures: a real embedded Postgres for the session, a fresh migrated database per test,
the fixture audio in ../shared/fixtures."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "jfk.flac").exists():
        pytest.fail(f"fixture audio not found in {FIXTURES} (the shared/ folder beside the checkout)")
    return FIXTURES


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
