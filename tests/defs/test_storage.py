"""The instance `chaffee up` writes: Postgres storage whose event log answers a step blocked on a pool
with a steady poll interval instead of Dagster's growing back-off."""

from __future__ import annotations

from chaffee_assets.defs.storage import DEFAULT_POOL_POLL_SECONDS, PooledPostgresEventLogStorage


def test_a_blocked_gpu_claim_polls_again_soon_and_gets_the_freed_slot(instance):
    storage = instance.event_log_storage
    assert isinstance(storage, PooledPostgresEventLogStorage)
    storage.set_concurrency_slots("gpu", 1)

    first = storage.claim_concurrency_slot("gpu", "run-a", "transcript")
    assert first.is_claimed

    blocked = storage.claim_concurrency_slot("gpu", "run-b", "transcript")
    assert not blocked.is_claimed
    assert blocked.sleep_interval == DEFAULT_POOL_POLL_SECONDS  # not 1 s, 1.1 s, … 15 s

    storage.free_concurrency_slot_for_step("run-a", "transcript")
    assert storage.claim_concurrency_slot("gpu", "run-b", "transcript").is_claimed


def test_a_run_waiting_for_a_gpu_slot_sleeps_and_starts_when_the_slot_is_freed(instance, settings):
    """Dagster 1.13's in-process executor spins while a step waits for a pool slot (see
    defs/concurrency.py); with the project's definitions loaded it sleeps between claim checks."""
    import threading
    import time

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
