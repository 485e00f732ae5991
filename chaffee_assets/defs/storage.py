"""Dagster's Postgres event-log storage, with a steady poll for `gpu` pool slots.

A step blocked on a pool asks again after 1 s, then 1.1 s, 1.21 s… up to 15 s (Dagster's default
back-off when the storage suggests no interval). A freed slot is assigned to the next waiting step
at once, but that step only notices at its next poll: after a minute of waiting, the GPU sits idle
for several seconds at every hand-off. This storage answers a blocked claim with a fixed interval
(`pool_poll_seconds`, default 0.5 s): one cheap query per waiting step and poll.

Used through DAGSTER_HOME/dagster.yaml (`event_log_storage`, written by `chaffee up`); everything
else is dagster-postgres's `PostgresEventLogStorage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Field
from dagster._core.storage.config import pg_config
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

DEFAULT_POOL_POLL_SECONDS = 0.5


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    def __init__(self, *args: Any, pool_poll_seconds: float = DEFAULT_POOL_POLL_SECONDS, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pool_poll_seconds = float(pool_poll_seconds)

    @classmethod
    def config_type(cls):
        return {**pg_config(), "pool_poll_seconds": Field(float, is_required=False, default_value=DEFAULT_POOL_POLL_SECONDS)}

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
        )

    def claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str, priority: int | None = None):
        status = super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)
        if status.is_claimed:
            return status
        return status.with_sleep_interval(self.pool_poll_seconds)
