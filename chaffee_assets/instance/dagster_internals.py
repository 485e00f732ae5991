"""Dagster's internals, in one room: what the project does with them, guarded, tested
(tests/instance/test_dagster_internals.py), nowhere else.

1. Patches, applied explicitly by the code location's start-up (`chaffee_assets/definitions.py`:
   `apply()`), each checking the behaviour it fixes first, with a test that says whether upstream still
   needs it (below).
2. Runs submitted to the instance's queue from a process that is not the webserver (`chaffee
   ingest`, `chaffee reembed`): what Dagster's own `dagster job launch` does, through the same
   internal API (a workspace process context, the implicit asset job's snapshot, `create_run`,
   `submit_run`); runs cancelled through the run coordinator; runs left behind by a process that no
   longer exists marked failed and their pool slots freed.

**A run waiting for a `gpu` slot sleeps until its next claim check instead of spinning.**

Dagster 1.13's in-process executor (`execute_plan.inner_plan_execution_iterator`) sleeps
`ActiveExecution.sleep_interval()` between attempts to start a step blocked on a pool, and that
interval comes from `InstanceConcurrencyContext.interval_to_next_pending_claim_check`, which returns
`min([0, …seconds to each pending check…])`: never positive. So a run whose next step waits for a
slot re-evaluates its plan in a tight loop. Measured on the benchmark (12 videos, 2 cores, gpu
pool 2): three runs waiting on the pool held ~45 % of a core each, for minutes, while the one step
that had a slot computed: the waiting runs took the CPU from the model they were waiting for.

`fix_pool_wait_busy_loop` makes the interval the time to the next pending claim check (the event
log storage's poll, `instance/event_log.py`), as the method's name says. It checks the behaviour first and
changes nothing once Dagster returns a positive interval itself.

**A code server keeps reporting runs whose process died after a database outage.**

A code server (`dagster._grpc.server.DagsterApiServer`) reports a run whose process ended without
finishing it from one thread, `_cleanup_thread`, which calls `_check_for_orphaned_runs` every
0.5 s with no guard: the check reads the run from the instance, so while the database is away it
raises (after dagster-postgres's connection retries, ~11 s under the server's execution lock), and
the exception ends the thread for the life of the server. A run whose process died in
the outage (or at any time after it) then stays STARTING or STARTED: one caught STARTING waited
for run monitoring's start timeout (180 s) before it was retried, in the outage test and the
benchmark's. `guard_orphan_check` makes an error in one check a warning (at most one a minute, with
the count); the run stays in the server's list (Dagster clears the list only after a pass with no
error), so the next check reports it once the database is back.
"""

from __future__ import annotations

import functools
import logging
import time
from contextlib import contextmanager
from pathlib import Path

from chaffee_assets.lib.errors import ChaffeeError

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


class _Stopped:
    """A stand-in for the server's termination event: set by the probe's second check."""

    def __init__(self) -> None:
        self.flag = False

    def wait(self, timeout: float | None = None) -> bool:
        return self.flag

    def is_set(self) -> bool:
        return self.flag


def orphan_check_dies_on_an_error(cls) -> bool:
    """Whether `cls._cleanup_thread` ends when one orphan check raises (it calls the check again
    otherwise; the probe's second check stops it). Instant: the probe's event never waits."""

    class Probe:
        _logger = logging.getLogger(f"{__name__}.probe")  # an upstream guard may log through it

        def __init__(self) -> None:
            self._server_termination_event = _Stopped()
            self.checks = 0

        def _check_for_orphaned_runs(self) -> None:
            self.checks += 1
            if self.checks == 1:
                raise ConnectionError("the database is away (the probe)")
            self._server_termination_event.flag = True

    loop = getattr(cls, "_cleanup_thread", None)
    if loop is None or not hasattr(cls, "_check_for_orphaned_runs"):
        return False  # another shape upstream: nothing here to patch
    try:
        loop(Probe())
    except ConnectionError:
        return True
    except Exception as e:  # noqa: BLE001 - a loop this probe does not understand is left alone
        log.info("dagster: the code server's cleanup loop is not the one patched here (%s); not patched", e)
    return False


WARN_EVERY_S = 60.0


def _guarded(check):
    @functools.wraps(check)
    def guarded_check(self) -> None:
        failures = self.__dict__.setdefault("_chaffee_check_failures", [0, float("-inf")])  # count, last warning
        try:
            check(self)
        except Exception as e:  # noqa: BLE001 - the next check, 0.5 s later, tries again
            failures[0] += 1
            if time.monotonic() - failures[1] >= WARN_EVERY_S:
                failures[1] = time.monotonic()
                self._logger.warning("could not check for runs whose process ended (%s: %s; %d failed checks); trying again",
                                     type(e).__name__, e, failures[0])
            return
        if failures[0]:
            self._logger.info("checking for runs whose process ended again, after %d failed checks", failures[0])
            failures[:] = [0, float("-inf")]

    guarded_check.chaffee_guarded = True
    return guarded_check


def guard_orphan_check() -> bool:
    """Guard the code server's orphan check when an error in it ends its thread; True when guarded
    (now or before)."""
    from dagster._grpc.server import DagsterApiServer

    if getattr(DagsterApiServer._check_for_orphaned_runs, "chaffee_guarded", False):
        return True
    if not orphan_check_dies_on_an_error(DagsterApiServer):
        return False
    DagsterApiServer._check_for_orphaned_runs = _guarded(DagsterApiServer._check_for_orphaned_runs)
    log.debug("dagster: a code server's orphaned-run check survives a database outage")
    return True


def apply() -> dict[str, bool]:
    """Apply every patch Dagster still needs here; {patch: applied}. Idempotent."""
    import dagster

    if dagster.__version__ != TESTED_WITH:
        log.info("dagster %s (patches tested with %s): each patch checks its behaviour first", dagster.__version__, TESTED_WITH)
    return {"pool_wait_busy_loop": fix_pool_wait_busy_loop(), "orphan_check_outage": guard_orphan_check()}


# -- runs submitted to the queue --------------------------------------------------------------------

LAUNCHED_BY = "chaffee/launched_by"
BATCH = "chaffee/batch"


def _workspace_process(instance, workspace_file: Path):
    """Dagster's process context on the workspace file the daemon loads (the same location name)."""
    import dagster
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    return WorkspaceProcessContext(instance, WorkspaceFileTarget([str(workspace_file)]), version=dagster.__version__)


@contextmanager
def workspace_context(instance, workspace_file: Path):
    """The code location as the daemon loads it (the same workspace file: the same location name)."""
    with _workspace_process(instance, workspace_file) as wpc:
        ctx = wpc.create_request_context()
        for name, entry in ctx.get_code_location_entries().items():
            if entry.load_error:
                raise ChaffeeError(f"the code location {name} failed to load: {entry.load_error.message.strip()}")
        yield ctx


def submit_runs(ctx, instance, requests: list[tuple[dict[str, str], list[str]]]) -> list[str]:
    """One queued run per request (its tags, the asset keys it materialises); their run ids."""
    from dagster import AssetKey
    from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.storage.dagster_run import DagsterRunStatus

    (location,) = [ctx.get_code_location(n) for n in ctx.get_code_location_entries()]
    (repo,) = location.get_repositories().values()
    plans: dict[tuple[str, ...], tuple] = {}
    run_ids = []
    for tags, assets in requests:
        keys = tuple(sorted(assets))
        if keys not in plans:
            selector = JobSubsetSelector(location_name=location.name, repository_name=repo.name,
                                         job_name=IMPLICIT_ASSET_JOB_NAME, op_selection=None,
                                         asset_selection=[AssetKey(k) for k in keys])
            job = location.get_job(selector)
            plans[keys] = (job, location.get_execution_plan(job, run_config={}, step_keys_to_execute=None,
                                                            known_state=None, instance=instance))
        job, plan = plans[keys]
        run = instance.create_run(
            job_name=job.name, run_id=None, run_config={}, status=DagsterRunStatus.NOT_STARTED,
            tags={**job.tags, **tags}, root_run_id=None, parent_run_id=None, step_keys_to_execute=None,
            execution_plan_snapshot=plan.execution_plan_snapshot, job_snapshot=job.job_snapshot,
            parent_job_snapshot=job.parent_job_snapshot, asset_selection=frozenset(AssetKey(k) for k in keys),
            asset_check_selection=None, resolved_op_selection=None, op_selection=None,
            remote_job_origin=job.get_remote_origin(), job_code_origin=job.get_python_origin(),
            asset_graph=ctx.asset_graph,
        )
        instance.submit_run(run.run_id, ctx)
        run_ids.append(run.run_id)
    return run_ids


def retry_here(instance, workspace_file: Path, run_id: str) -> None:
    """Dagster's own retry of a failed run (the function the daemon's run-retry thread calls), run
    from this process: it creates the retry, or submits one that was created but never submitted (a
    daemon that died between the two), and does nothing when the retry exists and was submitted.
    For a retry Dagster promised (`dagster/will_retry=true`) that its daemon never made (seen on CI
    after a database outage; for one, that thread's cursor on the event log starts at the log's end
    when it has none, so a failure written before its first look is never seen)."""
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import retry_run

    run = instance.get_run_by_id(run_id)
    if run is None:
        return
    with _workspace_process(instance, workspace_file) as wpc:
        retry_run(run, wpc)


def cancel_runs(instance, run_ids: list[str]) -> None:
    """Cancel what has not finished: queued runs at once, started ones through their code server."""
    from dagster._core.storage.dagster_run import DagsterRunStatus

    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            continue
        if run.status == DagsterRunStatus.NOT_STARTED:
            instance.report_run_canceled(run, message="cancelled by chaffee ingest")
        else:
            instance.run_coordinator.cancel_run(run_id)


def force_cancel(instance, run_ids: list[str]) -> None:
    """Runs that did not stop in time: marked cancelled, their pool slots and claims freed."""
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            instance.report_run_canceled(run, message="cancelled by chaffee ingest (did not stop in time)")
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def daemon_alive(instance, within_s: float = 60.0) -> bool:
    """Whether a dagster-daemon (the queue's, run monitoring's) sent a heartbeat lately."""
    beats = instance.get_daemon_heartbeats()
    beat = beats.get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < within_s


# The daemon threads an ingest relies on: the queue, run monitoring, run retries (the event log consumer).
INGEST_DAEMONS = ("QUEUED_RUN_COORDINATOR", "MONITORING", "EVENT_LOG_CONSUMER")
HEARTBEAT_S = 30.0  # how often a working daemon thread beats (dagster's DEFAULT_HEARTBEAT_INTERVAL_SECONDS)


def silent_daemons(instance, since: float, names: tuple[str, ...] = INGEST_DAEMONS) -> list[str]:
    """The daemon threads among `names` that beat after `since` (a time.time(): the daemon's start)
    but missed their last two heartbeats. A thread that never beat since then is not judged: the
    daemon may not run it (run monitoring switched off in the user's dagster.yaml). Dagster's own
    controller only warns about a thread silent for 30 minutes; a thread that hung in a database
    outage would leave failed runs without their retry for that long."""
    beats = instance.get_daemon_heartbeats()
    now = time.time()
    return [n for n in names if n in beats and beats[n].timestamp >= since and now - beats[n].timestamp > 2 * HEARTBEAT_S]


def clear_orphans(instance) -> list[str]:
    """With no daemon alive, runs still marked in progress were left by a process that no longer
    exists (their code server was that daemon's, or an ingest's): marked failed, slots freed."""
    from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, RunsFilter

    if daemon_alive(instance):
        return []
    stale = instance.get_runs(RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))
    for run in stale:
        instance.add_run_tags(run.run_id, {"dagster/max_retries": "0"})  # reported, not run again
        instance.report_run_failed(run, message="its process no longer exists (found by chaffee up)")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return [r.run_id for r in stale]


def worker_pid(instance, run_id: str) -> int | None:
    """The pid a run's process gave in its first event (`dagster._grpc.impl._run_in_subprocess`:
    "Started process for run (pid: N)."); None when no process of the run began."""
    import re

    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or ev.event_type_value != "ENGINE_EVENT":
            continue
        found = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
        if found:
            return int(found.group(1))
    return None


def dead_worker_pid(instance, run_id: str) -> int | None:
    """The pid of a run's worker process on this machine when that process no longer exists (the
    code server that would report it is gone too: a database outage, a killed daemon); else None."""
    import os

    pid = worker_pid(instance, run_id)
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except PermissionError:
        return None
    return None


def code_server_runs(workspace, run) -> list[str]:
    """The runs the code server of `run`'s location holds now (a start going on there, or a process
    it watches); raises when it cannot be asked."""
    from dagster._grpc.types import GetCurrentRunsResult
    from dagster._serdes import deserialize_value

    origin = run.remote_job_origin.repository_origin.code_location_origin
    client = workspace.get_code_location(origin.location_name).client
    return list(deserialize_value(client.get_current_runs(), GetCurrentRunsResult).current_runs)


def fail_dead_run(instance, run_id: str, pid: int) -> None:
    """A run whose worker died unreported: marked failed (so run retries run it again) and its
    pool slots and pending claims freed."""
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, message=f"its process (pid {pid}) died without reporting")
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
