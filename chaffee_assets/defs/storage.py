"""Dagster's Postgres event-log storage, tuned for steps that queue for `gpu` pool slots.

Three changes to dagster-postgres's `PostgresEventLogStorage`, each measured in bench/README.md:

- **A steady poll.** A step blocked on a pool asks again after 1 s, then 1.1 s, 1.21 s… up to 15 s
  (Dagster's back-off when the storage suggests no interval). A freed slot is assigned to the next
  waiting step at once, but that step only notices at its next poll: after a minute of waiting, the
  GPU sits idle for seconds at every hand-off. A blocked claim is answered with a fixed interval
  (`pool_poll_seconds`, default 0.5 s) instead.
- **A wake-up when a slot is freed** (`pool_notify`). Freeing a slot sends a Postgres `NOTIFY`; a
  run whose one waiting step was just refused a slot waits for that notification (at most the poll
  interval) inside the claim and asks again at once, so a freed slot is taken in milliseconds rather
  than half a poll interval on average. A run with several waiting steps (a distributed executor's
  run) polls as before, so no step waits behind another's claim.
- **Held connections** (`held_connections`). dagster-postgres opens a new connection for every
  statement (`NullPool`): a step's events, input loads and provenance lookups are dozens of
  connections, each a Postgres backend started and torn down while the step holds its slot. Each
  process keeps `held_connections` open instead (0: dagster-postgres's behaviour).

Used through DAGSTER_HOME/dagster.yaml (`event_log_storage`, written by `chaffee up`).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
import sqlalchemy.pool
from dagster import Field
from dagster._core.storage.config import pg_config
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

log = logging.getLogger(__name__)

DEFAULT_POOL_POLL_SECONDS = 0.5
CHANNEL = "chaffee_pool_slot_freed"
OVERFLOW = 8  # connections opened beyond the held ones when threads (the daemon's) need them at once


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    def __init__(
        self,
        *args: Any,
        pool_poll_seconds: float = DEFAULT_POOL_POLL_SECONDS,
        pool_notify: bool = True,
        held_connections: int = 1,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.pool_poll_seconds = float(pool_poll_seconds)
        self.pool_notify = bool(pool_notify)
        self.held_connections = int(held_connections)
        if self.held_connections > 0:
            self._engine.dispose()
            self._engine = create_pg_engine(
                self.postgres_url, self._token_provider, isolation_level="AUTOCOMMIT",
                pool_size=self.held_connections, max_overflow=OVERFLOW, pool_pre_ping=True, pool_recycle=3600,
            )
        self._listener: Any = None  # a connection of its own LISTENing on CHANNEL, opened on first wait
        self._listen_failed = False
        self._waiting: dict[tuple[str, str], float] = {}  # (run, step) -> when it was last refused
        self._lock = threading.Lock()
        self._wait_lock = threading.Lock()  # one thread at a time waits on the listener

    @classmethod
    def config_type(cls):
        return {
            **pg_config(),
            "pool_poll_seconds": Field(float, is_required=False, default_value=DEFAULT_POOL_POLL_SECONDS),
            "pool_notify": Field(bool, is_required=False, default_value=True),
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
            pool_notify=config_value.get("pool_notify", True),
            held_connections=config_value.get("held_connections", 1),
        )

    # -- claims ------------------------------------------------------------------------------------

    def claim_concurrency_slot(self, concurrency_key: str, run_id: str, step_key: str, priority: int | None = None):
        me = (run_id, step_key)
        waits = self._may_wait(me) and self._wait_lock.acquire(blocking=False)
        if waits:
            try:
                status = self._claim_waiting(concurrency_key, run_id, step_key, priority)
            finally:
                self._wait_lock.release()
        else:
            status = super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)
        with self._lock:
            if status.is_claimed:
                self._waiting.pop(me, None)
                return status
            self._waiting[me] = time.monotonic()
        # a step that waited inside its claim asks again at once; the others after the poll interval
        return status.with_sleep_interval(0.0 if waits else self.pool_poll_seconds)

    def _claim_waiting(self, concurrency_key: str, run_id: str, step_key: str, priority: int | None):
        """Claim; while refused, wait for a freed slot and claim again, for up to the poll interval."""
        deadline = time.monotonic() + self.pool_poll_seconds
        self._drain()  # a notification from now on is news: it wakes the wait below
        while True:
            status = super().claim_concurrency_slot(concurrency_key, run_id, step_key, priority)
            left = deadline - time.monotonic()
            if status.is_claimed or left <= 0 or not self._wait_for_release(left):
                return status

    def _may_wait(self, me: tuple[str, str]) -> bool:
        return self.pool_notify and self._only_waiter(me) and self._listen() is not None

    def _only_waiter(self, me: tuple[str, str]) -> bool:
        """Whether no other step of this process was refused a slot lately: blocking in its claim
        then holds back nothing (a run with several waiting steps keeps polling them in turn)."""
        recent = time.monotonic() - 4 * self.pool_poll_seconds
        with self._lock:
            return not any(k != me and t > recent for k, t in self._waiting.items())

    def free_concurrency_slot_for_step(self, run_id: str, step_key: str) -> None:
        super().free_concurrency_slot_for_step(run_id, step_key)
        with self._lock:
            self._waiting.pop((run_id, step_key), None)
        self._notify()

    def free_concurrency_slots_for_run(self, run_id: str) -> None:
        super().free_concurrency_slots_for_run(run_id)
        with self._lock:
            for key in [k for k in self._waiting if k[0] == run_id]:
                del self._waiting[key]
        self._notify()

    def set_concurrency_slots(self, concurrency_key: str, num: int) -> None:
        super().set_concurrency_slots(concurrency_key, num)
        self._notify()

    # -- NOTIFY / LISTEN -----------------------------------------------------------------------------

    def _notify(self) -> None:
        if not self.pool_notify:
            return
        with self.index_connection() as conn:
            conn.execute(sa.text(f"NOTIFY {CHANNEL}"))

    def _listen(self):
        if self._listener is None and not self._listen_failed:
            try:
                engine = create_pg_engine(self.postgres_url, self._token_provider, poolclass=sa.pool.NullPool)
                conn = engine.raw_connection()  # outside the pool: held for the process's life
                conn.driver_connection.autocommit = True
                with conn.driver_connection.cursor() as cur:
                    cur.execute(f"LISTEN {CHANNEL}")
                self._listener = conn
            except Exception as e:  # no LISTEN (a proxy in transaction mode): poll as before
                self._listen_failed = True
                log.warning("pool slot wake-ups unavailable (%s): steps waiting for a slot poll every %.2f s",
                            e, self.pool_poll_seconds)
        return self._listener

    def _drain(self) -> None:
        try:
            conn = self._listener.driver_connection
            conn.poll()
            conn.notifies.clear()
        except Exception as e:  # the connection broke (a restarted server): a new one next time
            self._drop_listener(e)

    def _wait_for_release(self, timeout: float) -> bool:
        """Block until a slot is freed somewhere (True) or `timeout` passes (False)."""
        if self._listener is None:
            return False
        try:
            conn = self._listener.driver_connection
            if not conn.notifies:
                readable, _, _ = select.select([conn], [], [], timeout)
                if not readable:
                    return False
                conn.poll()
            woken = bool(conn.notifies)
            conn.notifies.clear()
            return woken
        except Exception as e:
            self._drop_listener(e)
            return False

    def _drop_listener(self, error: Exception) -> None:
        log.info("pool slot wake-up connection lost (%s); reconnecting at the next wait", error)
        try:
            self._listener.close()
        except Exception:
            pass
        self._listener = None

    def dispose(self) -> None:
        super().dispose()
        if self._listener is not None:
            try:
                self._listener.close()
            except Exception:
                pass
            self._listener = None
        self._engine.dispose()
