"""The dagster-daemon an ingest starts (`instance.setup.Daemon`), on a real instance: one whose
process is alive but whose threads no longer work (frozen with SIGSTOP here; a thread hung in a
database outage in the wild, which Dagster's own controller only warns about after 30 minutes) is
replaced, and a working one is left alone."""

from __future__ import annotations

import os
import signal
import time

import pytest

from chaffee_assets.instance.dagster_internals import INGEST_DAEMONS, daemon_alive
from chaffee_assets.instance.setup import Daemon, _live_in_group, end_process_group
from tests.helpers.instances import dagster_instance, make_settings, new_database

pytestmark = pytest.mark.slow


def test_a_daemon_whose_threads_hang_is_replaced_and_a_working_one_is_not(pg_server, tmp_path):
    settings = make_settings(tmp_path, new_database(pg_server))
    with dagster_instance(pg_server, settings) as instance:
        daemon = Daemon(settings, hung_s=6.0)
        assert daemon.ensure(instance) == "started"
        first = daemon.proc.pid
        try:
            deadline = time.monotonic() + 60
            beats = instance.get_daemon_heartbeats
            while not set(INGEST_DAEMONS) <= set(beats()) and time.monotonic() < deadline:
                time.sleep(1.0)
            assert set(INGEST_DAEMONS) <= set(beats()), "the daemon's threads never beat"
            for _ in range(5):  # beating: checked again and again, never replaced
                assert daemon.ensure(instance) is None
                time.sleep(2.0)
            os.killpg(first, signal.SIGSTOP)  # alive, every thread frozen
            frozen_at = time.monotonic()
            why = None
            while why is None and time.monotonic() - frozen_at < 150:
                time.sleep(2.0)
                why = daemon.ensure(instance)
            assert why is not None, "a frozen daemon was never replaced"
            assert all(name in why for name in INGEST_DAEMONS) and "no heartbeat for over 66 s" in why, why
            # not before its threads had missed two beats (dagster beats every 30 s: the last one came
            # up to 30 s before the freeze) and then stayed silent for 6 s of checks
            assert time.monotonic() - frozen_at > 60 - 30 + 6
            assert daemon.proc.pid != first and daemon.proc.poll() is None
            assert not _live_in_group(first), "the frozen daemon's processes are still there"
            assert daemon_alive(instance)
            assert daemon.ensure(instance) is None  # the new one is left alone
        finally:
            daemon.stop(instance)
            end_process_group(first)
