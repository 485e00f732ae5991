"""The project's run launcher: which failed launches it waits out (the database being away, raised
in the launcher or reported by the code server for the run's process; nothing else) and what it
does once the database is back. (The launch made again after a real outage, a database stopped and
started under it: tests/defs/test_faults.py.)"""

from __future__ import annotations

import sys

import pytest
import sqlalchemy.exc
from dagster import DagsterRunStatus
from dagster._core.errors import DagsterLaunchFailedError
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_postgres.utils import retry_pg_connection_fn

from chaffee_assets.instance.launcher import (
    GIVE_UP,
    LAUNCH,
    LAUNCHED,
    _names_an_outage,
    after_outage,
)


def _refused() -> None:
    raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception('connection to server on socket "/tmp/.s.PGSQL.5432" failed'))


def _outage() -> BaseException:
    """What a Postgres-backed instance raises once dagster-postgres's retries are spent."""
    try:
        retry_pg_connection_fn(_refused, retry_limit=0)
    except Exception as e:  # noqa: BLE001 - the error itself is wanted
        return e
    raise AssertionError("dagster-postgres did not raise")


def _reported(error: BaseException) -> DagsterLaunchFailedError:
    """What DefaultRunLauncher raises when the code server's StartRun failed: the error's info only."""
    try:
        raise error
    except BaseException:  # noqa: BLE001 - serialised as the run's process does
        info = serializable_error_info_from_exc_info(sys.exc_info())
    return DagsterLaunchFailedError("Error during RPC setup for executing run", serializable_error_info=info)


@pytest.mark.parametrize(("error", "waits"), [
    (_outage(), True),  # the launcher's own write (the run's code-server tag)
    (_reported(_outage()), True),  # the run's process could not read its run
    (ValueError("bad config"), False),
    (_reported(ValueError("the job is not in this repository")), False),
    (DagsterLaunchFailedError("no code server"), False),
])
def test_only_a_database_outage_is_waited_out(error, waits):
    assert _names_an_outage(error) is waits


STARTING, STARTED, FAILURE = DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.FAILURE


@pytest.mark.parametrize(("status", "began", "held", "starting_for", "decision"), [
    (STARTING, False, False, 60.0, LAUNCH),  # nobody has it: launched again
    (STARTING, True, False, 60.0, LAUNCHED),  # a process of it wrote its first event: not twice
    (STARTING, False, True, 60.0, LAUNCHED),  # its code server still starts it (the caller only timed out)
    (STARTED, False, False, 60.0, LAUNCHED),
    (FAILURE, False, False, 60.0, LAUNCHED),  # someone failed it already: the daemon's retry has it
    (STARTING, False, None, 60.0, GIVE_UP),  # the code server cannot say: not launched twice on a guess
    (STARTING, False, False, 170.0, GIVE_UP),  # the start timeout is near: left to it
    (None, False, False, 60.0, GIVE_UP),  # the run is gone
])
def test_what_a_launch_does_once_the_database_is_back(status, began, held, starting_for, decision):
    assert after_outage(status, began, held, starting_for, patience_s=165.0) == decision

