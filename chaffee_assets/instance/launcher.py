"""Dagster's default run launcher, able to sit out a database outage in the middle of a launch.

The daemon's queue marks a run STARTING and then calls the launcher: it tags the run with its code
server (a database write) and asks that server to start the run's process, which first reads the
run (another one). When the database goes away in between, the launch fails, the code server
forgets the run (`DagsterApiServer.StartRun` drops a run whose start failed), and the daemon cannot
record the failure either: it reads the database to do so. The run then stays STARTING with no
process and nobody who knows, until run monitoring's start timeout (180 s by default) fails it and
run retries start it again. Seen in the outage test: two of three runs caught starting waited the
full 180 s after the database was already back.

`PatientRunLauncher` is `DefaultRunLauncher` with one change: a launch that failed because the
database could not be reached waits for it to answer again, then decides (`after_outage`):

- the run is still STARTING, no process of it wrote a word, and its code server does not hold it
  (a start that only timed out on the caller's side may still be going on there): it is marked
  STARTING again, which gives it a whole start timeout, and launched once more;
- a process of it began, or its code server holds it, or it is past STARTING: the launch did happen
  or someone else has it; nothing is done;
- the start timeout is near (within `HANDOVER_S`), or the database or the code server cannot be
  asked: the launch's own error is raised, and the daemon fails the run, which run retries start again.

Any failure that is not the database is raised at once, as Dagster raises it.

Used through DAGSTER_HOME/dagster.yaml (`run_launcher`, written by `chaffee up`); a run launcher of
your own there (Docker, Kubernetes) replaces it and leaves these cases to the start timeout.
"""

from __future__ import annotations

import logging
import threading
import time

from dagster import DagsterRunStatus, DefaultRunLauncher
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.launcher import LaunchRunContext

from chaffee_assets.instance import dagster_internals as internals
from chaffee_assets.lib.errors import is_database_outage

log = logging.getLogger(__name__)

NO_MONITORING_PATIENCE_S = 300.0  # how long a launch waits for the database when no start timeout takes over
HANDOVER_S = 15.0  # nearer the start timeout than this, a launch is left to it
POLL_S = 1.0

LAUNCH, LAUNCHED, GIVE_UP = "launch again", "launched", "give up"


def after_outage(status: DagsterRunStatus | None, process_began: bool, held_by_server: bool | None,
                 starting_for_s: float, patience_s: float) -> str:
    """What a launch cut short by an outage does once the database answers again. `held_by_server`:
    whether the run's code server lists it among its runs (None: the server could not be asked)."""
    if status is None:
        return GIVE_UP
    if status != DagsterRunStatus.STARTING or process_began or held_by_server:
        return LAUNCHED
    if held_by_server is None or starting_for_s >= patience_s:
        return GIVE_UP
    return LAUNCH


class PatientRunLauncher(DefaultRunLauncher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._closing = threading.Event()

    def dispose(self) -> None:
        self._closing.set()  # a launch waiting for the database stops waiting
        super().dispose()

    def launch_run(self, context: LaunchRunContext) -> None:
        began = time.time()  # the daemon marked the run STARTING just before
        try:
            super().launch_run(context)
            return
        except Exception as e:
            if not _names_an_outage(e):
                raise
            cut = e
        run_id = context.dagster_run.run_id
        log.warning("run %s: its launch was cut short by a database outage; waiting for the database", run_id)
        patience = self._patience_s()
        run = self._run_once_reachable(run_id, began + patience)
        if run is None:
            raise cut
        instance = self._instance
        starting_since = instance.get_run_stats(run_id).launch_time or began
        decision = after_outage(run.status, internals.worker_pid(instance, run_id) is not None,
                                self._held_by_server(context), time.time() - starting_since, patience)
        log.warning("run %s: the database is back after %.0f s; %s", run_id, time.time() - began, decision)
        if decision == GIVE_UP:
            raise cut
        if decision == LAUNCHED:
            return
        instance.report_dagster_event(  # a new launch time: the start timeout counts from here
            DagsterEvent(DagsterEventType.PIPELINE_STARTING.value, job_name=run.job_name), run_id=run_id)
        instance.report_engine_event(
            f"The launch was cut short by a database outage; launching again now that it is back "
            f"({time.time() - began:.0f} s later).", run)
        super().launch_run(LaunchRunContext(dagster_run=instance.get_run_by_id(run_id), workspace=context.workspace))

    def _patience_s(self) -> float:
        instance = self._instance
        if instance.run_monitoring_enabled:
            return max(0.0, instance.run_monitoring_start_timeout_seconds - HANDOVER_S)
        return NO_MONITORING_PATIENCE_S

    def _run_once_reachable(self, run_id: str, deadline: float):
        """The run, read again as soon as the database answers; None when it did not by `deadline`,
        on another error, or when the instance is closing (each attempt takes dagster-postgres's own
        connection retries, ~11 s, while the database is away)."""
        while not self._closing.is_set():
            try:
                return self._instance.get_run_by_id(run_id)
            except Exception as e:
                if not is_database_outage(e) or time.time() >= deadline:
                    return None
            self._closing.wait(POLL_S)
        return None

    @staticmethod
    def _held_by_server(context: LaunchRunContext) -> bool | None:
        """Whether the run's code server has the run (a start still going on there, or its process)."""
        try:
            return context.dagster_run.run_id in internals.code_server_runs(context.workspace, context.dagster_run)
        except Exception as e:  # noqa: BLE001 - unknown: not launched again
            log.warning("run %s: its code server could not say whether it has the run (%s)", context.dagster_run.run_id, e)
            return None


def _names_an_outage(e: BaseException) -> bool:
    """Whether a failed launch was the database being away: raised here (the launcher's own write),
    or reported by the code server for the run's process (an error info, not an exception chain)."""
    if is_database_outage(e):
        return True
    pending = [getattr(e, "serializable_error_info", None)]
    while pending:
        info = pending.pop()
        if info is None:
            continue
        if info.cls_name == "OperationalError":  # SQLAlchemy's or psycopg's, as is_database_outage
            return True
        pending += [info.cause, info.context]
    return False
