"""The instance `chaffee up` writes: Postgres storage whose event log answers a step blocked on a pool
with a steady poll interval instead of Dagster's growing back-off, wakes it when a slot is freed, and
keeps its connection."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import sqlalchemy as sa

from chaffee_assets.defs.storage import DEFAULT_POOL_POLL_SECONDS, PooledPostgresEventLogStorage


def test_a_blocked_gpu_claim_polls_again_soon_and_gets_the_freed_slot(instance):
    storage = instance.event_log_storage
    assert isinstance(storage, PooledPostgresEventLogStorage)
    storage.pool_notify = False  # the poll alone (POOL_NOTIFY=false)
    storage.set_concurrency_slots("gpu", 1)

    first = storage.claim_concurrency_slot("gpu", "run-a", "transcript")
    assert first.is_claimed

    blocked = storage.claim_concurrency_slot("gpu", "run-b", "transcript")
    assert not blocked.is_claimed
    assert blocked.sleep_interval == DEFAULT_POOL_POLL_SECONDS  # not 1 s, 1.1 s, … 15 s

    storage.free_concurrency_slot_for_step("run-a", "transcript")
    assert storage.claim_concurrency_slot("gpu", "run-b", "transcript").is_claimed


@contextmanager
def _second_process_storage(settings, poll: float):
    """The event log as another process (a run worker) has it: its own instance and connections."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(settings.dagster_home)) as other:
        storage = other.event_log_storage
        storage.pool_poll_seconds = poll
        yield storage


def _claim_while_freed_after(storage, other, delay: float = 1.0):
    """`other` claims run-b's `speech` slot while `storage` frees run-a's after `delay` seconds;
    (the claim's status, seconds the claim took)."""
    timer = threading.Timer(delay, storage.free_concurrency_slot_for_step, ("run-a", "speech"))
    t0 = time.monotonic()
    timer.start()
    try:
        status = other.claim_concurrency_slot("gpu", "run-b", "speech")
        return status, time.monotonic() - t0
    finally:
        timer.join()


def test_a_freed_slot_wakes_the_claim_waiting_for_it(instance, settings):
    """With POOL_NOTIFY (the default) a refused claim waits inside the storage until a slot is freed
    (a Postgres NOTIFY from whoever frees it) and takes it then, not at its next poll."""
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", "run-a", "speech").is_claimed

    with _second_process_storage(settings, poll=60.0) as other:
        status, waited = _claim_while_freed_after(storage, other, 1.0)
    assert status.is_claimed
    # it waited for the free (1 s), and was woken by it: the poll alone would have taken 60 s
    assert 0.9 <= waited < 30.0, waited


def test_a_refused_claim_waits_one_poll_and_a_second_waiting_step_does_not_wait_behind_it(instance, settings):
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", "run-a", "speech").is_claimed

    with _second_process_storage(settings, poll=1.0) as other:
        t0 = time.monotonic()
        first = other.claim_concurrency_slot("gpu", "run-b", "speech")
        waited = time.monotonic() - t0
        # nothing was freed: refused after one poll interval spent waiting, so asked again at once
        assert not first.is_claimed and waited >= 1.0 and first.sleep_interval == 0.0
        # a second step of the same process waiting meanwhile (a run with several waiting steps):
        # it is answered without waiting, and both poll
        second = other.claim_concurrency_slot("gpu", "run-b", "embeddings")
        assert not second.is_claimed and second.sleep_interval == 1.0

        storage.free_concurrency_slot_for_step("run-a", "speech")
        assert other.claim_concurrency_slot("gpu", "run-b", "speech").is_claimed


def test_a_lost_wake_up_connection_is_reopened_and_claims_carry_on(instance, settings):
    """A server restart (here: the listening backend terminated) costs one poll, not the step."""
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", "run-a", "speech").is_claimed

    with _second_process_storage(settings, poll=0.5) as other:
        assert not other.claim_concurrency_slot("gpu", "run-b", "speech").is_claimed  # listening now
        pid = other._listener.driver_connection.get_backend_pid()
        with storage.index_connection() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        time.sleep(0.5)
        refused = other.claim_concurrency_slot("gpu", "run-b", "speech")  # no error: refused, asks again
        assert not refused.is_claimed

        other.pool_poll_seconds = 60.0
        status, waited = _claim_while_freed_after(storage, other, 1.0)
        assert status.is_claimed and waited < 30.0, waited  # woken again: the listener was reopened
        assert other._listener.driver_connection.get_backend_pid() != pid


def test_a_process_keeps_its_event_log_connection(instance):
    """EVENT_LOG_CONNECTIONS=1 (the default): one held connection serves a process's statements
    (dagster-postgres alone opens a new one per statement)."""
    storage = instance.event_log_storage
    pids = set()
    for _ in range(5):
        with storage.index_connection() as conn:
            pids.add(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar())
    assert len(pids) == 1

    storage_per_statement = PooledPostgresEventLogStorage(storage.postgres_url, held_connections=0)
    try:
        pids = set()
        for _ in range(3):
            with storage_per_statement.index_connection() as conn:
                pids.add(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar())
        assert len(pids) == 3
    finally:
        storage_per_statement.dispose()


def test_a_run_waiting_for_a_gpu_slot_sleeps_and_starts_when_the_slot_is_freed(instance, settings):
    """Dagster 1.13's in-process executor spins while a step waits for a pool slot (see
    defs/concurrency.py); with the project's definitions loaded it sleeps between claim checks."""

    import dagster as dg
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

    from chaffee_assets.defs.build import build_resources
    from chaffee_assets.defs.concurrency import fix_pool_wait_busy_loop, interval_is_broken

    build_resources(settings)  # what the code location and `chaffee ingest` do
    assert not interval_is_broken(InstanceConcurrencyContext) and fix_pool_wait_busy_loop()

    @dg.asset(pool="gpu")
    def needs_the_gpu() -> int:
        return 1

    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", "another-run", "transcript").is_claimed

    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=dg.materialize([needs_the_gpu], instance=instance)))
    thread.start()
    deadline = time.time() + 60
    while not storage.get_concurrency_info("gpu").pending_steps and time.time() < deadline:
        time.sleep(0.1)
    assert storage.get_concurrency_info("gpu").pending_steps, "the run never queued for the slot"
    waiting_cpu0, t0 = time.process_time(), time.time()
    time.sleep(3.0)
    waiting_cpu = time.process_time() - waiting_cpu0
    assert thread.is_alive() and not result  # still waiting: the slot is taken
    # a busy loop takes a whole core (about 3 s of CPU here); sleeping between 0.5 s checks, little
    assert waiting_cpu < 0.3 * (time.time() - t0), f"{waiting_cpu:.2f} s of CPU while waiting"

    storage.free_concurrency_slot_for_step("another-run", "transcript")
    thread.join(timeout=60)
    assert result["r"].success
