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
