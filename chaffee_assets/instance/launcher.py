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
database could not be reached waits for it to answer again and launches once more, if the run is
still STARTING and no process of it ever began. It waits at most until shortly before the start
timeout (which takes over from there, as before); any other failure is raised at once, as Dagster
raises it.

Used through DAGSTER_HOME/dagster.yaml (`run_launcher`, written by `chaffee up`); a run launcher of
your own there (Docker, Kubernetes) replaces it and leaves these cases to the start timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from dagster import DagsterRunStatus, DefaultRunLauncher
from dagster._core.events import EngineEventData
from dagster._core.launcher import LaunchRunContext
from dagster._serdes import ConfigurableClassData

from chaffee_assets.lib.errors import is_database_outage

log = logging.getLogger(__name__)

NO_MONITORING_PATIENCE_S = 300.0  # how long a launch waits for the database when no start timeout takes over
HANDOVER_S = 15.0  # stop waiting this long before the start timeout, so that one of the two acts
POLL_S = 1.0
STARTED_PROCESS = "Started process for run"  # the first event a run's process writes (dagster._grpc.impl)


class PatientRunLauncher(DefaultRunLauncher):
    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> PatientRunLauncher:
        return cls(inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        began = time.monotonic()
        try:
            super().launch_run(context)
            return
        except Exception as e:
            if not _names_an_outage(e):
                raise
            cut = e
        run_id = context.dagster_run.run_id
        log.warning("run %s: its launch was cut short by a database outage; waiting for the database", run_id)
        run = self._run_once_reachable(run_id, began + self._patience_s())
        if run is None or run.status != DagsterRunStatus.STARTING or self._a_process_began(run_id):
            raise cut  # given up, or someone else has it now: the daemon's own handling from here
        waited = time.monotonic() - began
        self._instance.report_engine_event(
            f"The launch was cut short by a database outage; launching again now that it is back ({waited:.0f} s later).",
            run, EngineEventData(),
        )
        log.warning("run %s: the database is back after %.0f s; launching it again", run_id, waited)
        super().launch_run(LaunchRunContext(dagster_run=run, workspace=context.workspace))

    def _patience_s(self) -> float:
        instance = self._instance
        if instance.run_monitoring_enabled:
            return max(0.0, instance.run_monitoring_start_timeout_seconds - HANDOVER_S)
        return NO_MONITORING_PATIENCE_S

    def _run_once_reachable(self, run_id: str, deadline: float):
        """The run, read again as soon as the database answers; None when it did not by `deadline`
        (each attempt takes dagster-postgres's own connection retries, ~11 s, when it is away)."""
        while True:
            try:
                return self._instance.get_run_by_id(run_id)
            except Exception as e:
                if not is_database_outage(e) or time.monotonic() >= deadline:
                    return None
            time.sleep(POLL_S)

    def _a_process_began(self, run_id: str) -> bool:
        return any(STARTED_PROCESS in (entry.message or "") for entry in self._instance.all_logs(run_id))


def _names_an_outage(e: BaseException) -> bool:
    """Whether a failed launch was the database being away: raised here (the launcher's own write),
    or reported by the code server for the run's process (an error info, not an exception chain)."""
    if is_database_outage(e):
        return True
    info = getattr(e, "serializable_error_info", None)
    while info is not None:
        if info.cls_name == "OperationalError":
            return True
        info = info.cause or info.context
    return False
