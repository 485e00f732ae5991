"""Connections to the archive database and its versioned schema migrations."""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

from chaffee_assets.lib.errors import DatabaseError

log = logging.getLogger(__name__)

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


def redacted(url: str) -> str:
    """A database URL safe to print: its password (if any) replaced by `***`."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:  # not parseable as a URL: print nothing of it
        return "<database URL>"


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A psycopg 3 connection with pgvector's types registered (when the extension exists)."""
    try:
        conn = psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as e:
        raise DatabaseError(f"cannot connect to the archive database {redacted(url)}: {_first_line(e)}", transient=True) from e
    try:
        from pgvector.psycopg import register_vector

        register_vector(conn)
    except psycopg.ProgrammingError:  # the vector extension is not created yet
        conn.rollback()
    return conn


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with the package, in order."""
    out = []
    for res in resources.files("chaffee_assets.archive.migrations").iterdir():
        if res.name.endswith(".sql"):
            version = int(res.name.split("_", 1)[0])
            out.append((version, res.name, res.read_text()))
    return sorted(out)


def migrate(url: str) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_lock(727001)")  # one migrator at a time
        try:
            conn.execute(_MIGRATIONS_TABLE)
            conn.commit()
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for version, name, sql in migrations():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
                log.info("applied migration %s", name)
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(727001)")
            conn.commit()
    return applied


def ensure_database(server_url: str, name: str) -> bool:
    """Create database `name` on the server if missing; True if it was created."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"invalid database name {name!r}")
    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
        return True


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
