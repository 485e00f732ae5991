"""Standing the project up on one machine: the embedded Postgres (or DATABASE_URL), the archive
database and its migrations, Dagster's storage database, and DAGSTER_HOME/dagster.yaml."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from chaffee_assets.lib import db, pg
from chaffee_assets.settings import Settings

log = logging.getLogger(__name__)

ARCHIVE_DB = "chaffee"
DAGSTER_DB = "dagster"
TEMPLATE = Path(__file__).resolve().parents[1] / "dagster.yaml"  # the repo's template


@dataclass(frozen=True)
class Up:
    archive_url: str
    dagster_url: str
    dagster_home: Path
    embedded: bool
    started_seconds: float
    migrations_applied: list[str]


def _urls_file(settings: Settings) -> Path:
    return settings.state_path / "urls.json"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def embedded_archive_url(settings: Settings) -> str:
    """The archive URL recorded by `chaffee up` (the server's unix socket lives in its data folder)."""
    f = _urls_file(settings)
    if f.exists():
        return json.loads(f.read_text())["archive"]
    return pg.ServerInfo(settings.pg_data_dir.resolve(), 0, str(settings.pg_data_dir.resolve())).url(ARCHIVE_DB)


def dagster_storage_url(settings: Settings, archive_url: str) -> str:
    # Dagster's tables (runs, event_logs, …) do not collide with ours, but one machine keeps them apart.
    if settings.database_url:
        return os.environ.get("DAGSTER_DATABASE_URL") or archive_url
    return _with_database(archive_url, DAGSTER_DB)


def write_dagster_yaml(settings: Settings, dagster_url: str) -> Path:
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    text = (
        TEMPLATE.read_text()
        .replace("__POSTGRES_URL__", json.dumps(_sqlalchemy_url(dagster_url)))
        .replace("__MAX_CONCURRENT_RUNS__", str(settings.download_workers))
        .replace("__POOL_POLL_SECONDS__", repr(settings.pool_poll_seconds))
        .replace("__POOL_NOTIFY__", "true" if settings.pool_notify else "false")
        .replace("__EVENT_LOG_CONNECTIONS__", str(settings.event_log_connections))
    )
    path = home / "dagster.yaml"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _sqlalchemy_url(url: str) -> str:
    # dagster-postgres goes through SQLAlchemy + psycopg2
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url[len("postgres://") :]
    return url


def set_pool_limits(settings: Settings) -> dict[str, int]:
    """The `gpu` pool's limit is ASR_WORKERS (honoured across runs)."""
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    with DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", settings.asr_workers)
        return {"gpu": settings.asr_workers}


def up(settings: Settings) -> Up:
    """Start or reuse everything; idempotent."""
    t0 = time.perf_counter()
    settings.state_path.mkdir(parents=True, exist_ok=True)
    if settings.database_url:
        archive = settings.database_url
        embedded = False
    else:
        info = pg.start(settings.pg_data_dir)
        db.ensure_database(info.url(), ARCHIVE_DB)
        db.ensure_database(info.url(), DAGSTER_DB)
        archive = info.url(ARCHIVE_DB)
        embedded = True
    started = time.perf_counter() - t0
    applied = db.migrate(archive)
    dagster_url = dagster_storage_url(settings, archive)
    _urls_file(settings).write_text(json.dumps({"archive": archive, "dagster": dagster_url}, indent=1))
    write_dagster_yaml(settings, dagster_url)
    set_pool_limits(settings)
    return Up(archive, dagster_url, settings.dagster_home, embedded, started, applied)


def down(settings: Settings) -> bool:
    if settings.database_url:
        return False
    return pg.stop(settings.pg_data_dir)
