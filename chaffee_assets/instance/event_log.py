"""Dagster's Postgres event-log storage, tuned for steps that queue for `gpu` pool slots.

Two changes to dagster-postgres's `PostgresEventLogStorage`, each measured in bench/README.md and
each with a test (tests/instance/test_event_log.py) that says whether upstream still needs it:

- **A steady poll.** A step blocked on a pool asks again after 1 s, then 1.1 s, 1.21 s… up to 15 s
  (Dagster's back-off when the storage suggests no interval). A freed slot is assigned to the next
  waiting step at once, but that step only notices at its next poll: after a minute of waiting, the
  GPU sits idle for seconds at every hand-off. A blocked claim is answered with a fixed interval
  (`pool_poll_seconds`, default 0.5 s) instead.
- **Held connections** (`held_connections`). dagster-postgres opens a new connection for every
  statement (`NullPool`): a step's events, input loads and provenance lookups are dozens of
  connections, each a Postgres backend started and torn down while the step holds its slot. Each
  process keeps `held_connections` open instead (0: dagster-postgres's behaviour). Measured: the
  time a slot is held with no model computing fell from ~1.1 s to ~0.35 s per video.

Used through DAGSTER_HOME/dagster.yaml (`event_log_storage`, written by `chaffee up`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Field
from dagster._core.storage.config import pg_config
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

DEFAULT_POOL_POLL_SECONDS = 0.5
OVERFLOW = 8  # connections opened beyond the held ones when threads (the daemon's) need them at once


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    def __init__(
        self, *args: Any, pool_poll_seconds: float = DEFAULT_POOL_POLL_SECONDS, held_connections: int = 1, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.pool_poll_seconds = float(pool_poll_seconds)
        self.held_connections = int(held_connections)
        if self.held_connections > 0:
            if not hasattr(self, "_engine"):  # the one private attribute this class relies on
                raise RuntimeError("dagster-postgres's event log storage has no _engine: update chaffee_assets/instance/event_log.py")
            self._engine.dispose()
            self._engine = create_pg_engine(
                self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT",
                pool_size=self.held_connections, max_overflow=OVERFLOW, pool_pre_ping=True, pool_recycle=3600,
            )

    @classmethod
    def config_type(cls):
        return {
            **pg_config(),
            "pool_poll_seconds": Field(float, is_required=False, default_value=DEFAULT_POOL_POLL_SECONDS),
            "held_connections": Field(int, is_required=False, default_value=1),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
            pool_poll_seconds=config_value.get("pool_poll_seconds", DEFAULT_POOL_POLL_SECONDS),
            held_connections=config_value.get("held_connections", 1),
        )

    def claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str, priority: int | None = None):
        status = super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)
        return status if status.is_claimed else status.with_sleep_interval(self.pool_poll_seconds)

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()
