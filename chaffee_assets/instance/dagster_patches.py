"""Patches of Dagster's internals, in one room: applied explicitly by the code location's start-up
(`chaffee_assets/definitions.py`: `apply()`), each checking the behaviour it fixes first, each with
a test (tests/instance/test_dagster_patches.py) that says whether upstream still needs it.

**A run waiting for a `gpu` slot sleeps until its next claim check instead of spinning.**

Dagster 1.13's in-process executor (`execute_plan.inner_plan_execution_iterator`) sleeps
`ActiveExecution.sleep_interval()` between attempts to start a step blocked on a pool, and that
interval comes from `InstanceConcurrencyContext.interval_to_next_pending_claim_check`, which returns
`min([0, …seconds to each pending check…])`: never positive. So a run whose next step waits for a
slot re-evaluates its plan in a tight loop. Measured on the benchmark (12 videos, 2 cores, gpu
pool 2): three runs waiting on the pool held ~45 % of a core each, for minutes, while the one step
that had a slot computed: the waiting runs took the CPU from the model they were waiting for.

`fix_pool_wait_busy_loop` makes the interval the time to the next pending claim check (the event
log storage's poll, `defs/storage.py`), as the method's name says. It checks the behaviour first and
changes nothing once Dagster returns a positive interval itself.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

TESTED_WITH = "1.13.27"  # the Dagster version these patches were measured and tested on


def _interval_to_next_pending_claim_check(self) -> float:
    if not self._pending_claims or not self._pending_timeouts:
        return 0.0
    return max(0.0, min(self._pending_timeouts.values()) - time.time())


def interval_is_broken(cls) -> bool:
    """Whether `cls.interval_to_next_pending_claim_check` answers 0 with a check 60 s away."""

    class Probe:
        _pending_claims = {"step"}
        _pending_timeouts = {"step": time.time() + 60.0}

    return cls.interval_to_next_pending_claim_check(Probe()) <= 0.0


def fix_pool_wait_busy_loop() -> bool:
    """Patch Dagster's interval when it is the busy-looping one; True when patched (now or before)."""
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

    method = InstanceConcurrencyContext.interval_to_next_pending_claim_check
    if method is _interval_to_next_pending_claim_check:
        return True
    if not interval_is_broken(InstanceConcurrencyContext):
        return False
    InstanceConcurrencyContext.interval_to_next_pending_claim_check = _interval_to_next_pending_claim_check
    log.debug("dagster: a step blocked on a pool now sleeps until its next claim check")
    return True


def apply() -> dict[str, bool]:
    """Apply every patch Dagster still needs here; {patch: applied}. Idempotent."""
    import dagster

    if dagster.__version__ != TESTED_WITH:
        log.info("dagster %s (patches tested with %s): each patch checks its behaviour first", dagster.__version__, TESTED_WITH)
    return {"pool_wait_busy_loop": fix_pool_wait_busy_loop()}
