"""The instance's event log: a step blocked on a pool polls again after a steady interval, and each
process keeps its connection. Each change has a test that says whether dagster-postgres still
needs it (its own storage still answers with no interval, still opens a connection per statement)."""

from __future__ import annotations

import sqlalchemy as sa
from dagster_postgres.event_log import PostgresEventLogStorage

from chaffee_assets.instance.event_log import DEFAULT_POOL_POLL_SECONDS, PooledPostgresEventLogStorage


def _backend_pids(storage, n: int) -> set[int]:
    pids = set()
    for _ in range(n):
        with storage.index_connection() as conn:
            pids.add(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar())
    return pids


def test_a_blocked_gpu_claim_polls_again_soon_and_gets_the_freed_slot(instance):
    storage = instance.event_log_storage
    assert isinstance(storage, PooledPostgresEventLogStorage)
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", "run-a", "transcript").is_claimed

    blocked = storage.claim_concurrency_slot("gpu", "run-b", "transcript")
    assert not blocked.is_claimed
    assert blocked.sleep_interval == DEFAULT_POOL_POLL_SECONDS  # not 1 s, 1.1 s, … 15 s

    storage.free_concurrency_slot_for_step("run-a", "transcript")
    assert storage.claim_concurrency_slot("gpu", "run-b", "transcript").is_claimed


def test_upstream_still_answers_a_blocked_claim_without_an_interval(instance):
    """If this fails, dagster-postgres suggests its own poll interval: the steady poll may go."""
    upstream = PostgresEventLogStorage(instance.event_log_storage.postgres_url)
    try:
        upstream.set_concurrency_slots("gpu", 1)
        assert upstream.claim_concurrency_slot("gpu", "run-a", "transcript").is_claimed
        blocked = upstream.claim_concurrency_slot("gpu", "run-b", "transcript")
        assert not blocked.is_claimed and blocked.sleep_interval is None
    finally:
        upstream.dispose()


def test_a_process_keeps_its_event_log_connection(instance):
    """EVENT_LOG_CONNECTIONS=1 (the default): one held connection serves a process's statements."""
    assert len(_backend_pids(instance.event_log_storage, 5)) == 1


def test_upstream_still_opens_a_connection_per_statement(instance):
    """If this fails, dagster-postgres pools its connections itself: held_connections may go."""
    per_statement = PooledPostgresEventLogStorage(instance.event_log_storage.postgres_url, held_connections=0)
    try:
        assert len(_backend_pids(per_statement, 3)) == 3
    finally:
        per_statement.dispose()
