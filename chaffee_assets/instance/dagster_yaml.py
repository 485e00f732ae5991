"""DAGSTER_HOME/dagster.yaml: the keys the project owns, merged into the user's file.

The template (`dagster.yaml` beside this module, package data) holds the project's keys and its
defaults. The owned keys follow the settings on every `chaffee up`; every other key (a run launcher,
run retries, monitoring, anything Dagster accepts) and the user's comments are kept as written; a
default is added only where the key is missing.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from chaffee_assets.lib.errors import ChaffeeError
from chaffee_assets.settings import Settings

TEMPLATE = Path(__file__).with_name("dagster.yaml")
OWNED: tuple[tuple[str, ...], ...] = (
    ("run_storage",),
    ("event_log_storage",),
    ("schedule_storage",),
    ("concurrency", "runs", "max_concurrent_runs"),
    ("concurrency", "pools", "granularity"),
)


def sqlalchemy_url(url: str) -> str:
    """dagster-postgres goes through SQLAlchemy + psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def render(settings: Settings, dagster_url: str) -> str:
    """The template with the settings filled in: the whole file of a new instance."""
    return (
        TEMPLATE.read_text()
        .replace("__POSTGRES_URL__", json.dumps(sqlalchemy_url(dagster_url)))
        .replace("__MAX_CONCURRENT_RUNS__", str(settings.download_workers))
        .replace("__POOL_POLL_SECONDS__", repr(settings.pool_poll_seconds))
        .replace("__EVENT_LOG_CONNECTIONS__", str(settings.event_log_connections))
    )


def merge_dagster_yaml(current: str | None, settings: Settings, dagster_url: str) -> str:
    """The file `chaffee up` writes, given the file there now (None: no file yet)."""
    project_text = render(settings, dagster_url)
    if current is None or not current.strip():
        return project_text
    yaml = _yaml()
    from ruamel.yaml import YAMLError

    project = yaml.load(project_text)
    try:
        mine = yaml.load(current)
    except YAMLError as e:  # a key twice (a second run_launcher), a bad indent: where, in the user's terms
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
        raise ChaffeeError(f"DAGSTER_HOME/dagster.yaml cannot be read{line}: {problem}; fix it, or move it away and run `chaffee up`") from e
    if not isinstance(mine, dict):
        raise ChaffeeError("DAGSTER_HOME/dagster.yaml is not a YAML mapping: fix it, or move it away and run `chaffee up`")
    for path in OWNED:
        _set(mine, path, _get(project, path))
    for key, value in project.items():
        if key not in mine:
            mine[key] = value
    out = io.StringIO()
    yaml.dump(mine, out)
    return current if _same(out.getvalue(), current) else out.getvalue()


def _same(a: str, b: str) -> bool:
    """Whether two YAML texts hold the same values (an unchanged file is left as it is)."""
    import yaml

    return yaml.safe_load(a) == yaml.safe_load(b)


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: the user's comments and key order survive
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _set(doc: Any, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(doc.get(key), dict):
            doc[key] = {}
        doc = doc[key]
    doc[path[-1]] = value
