"""Which failed launches the project's run launcher waits out: the database being away, raised in
the launcher or reported by the code server for the run's process; nothing else. (The launch made
again after an outage, with a real database stopped and started: tests/defs/test_faults.py.)"""

from __future__ import annotations

import sys

import pytest
import sqlalchemy.exc
from dagster._core.errors import DagsterLaunchFailedError
from dagster._utils.error import serializable_error_info_from_exc_info

from chaffee_assets.instance.launcher import _names_an_outage


def _outage() -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception('connection to server on socket "/tmp/.s.PGSQL.5432" failed'))


def _reported(e: BaseException) -> DagsterLaunchFailedError:
    """What DefaultRunLauncher raises when the code server's StartRun failed: the error's info only."""
    try:
        try:
            raise e
        except BaseException as inner:
            raise RuntimeError("Error during RPC setup for executing run") from inner
    except RuntimeError:
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
