"""The Dagster patch room: applied by the code location's start-up, and still needed upstream."""

from __future__ import annotations

import subprocess
import sys
import time

import dagster as dg

from tests.helpers.threads import Background


def test_upstream_still_spins_while_a_step_waits_for_a_pool_slot():
    """If this fails, Dagster's own interval is positive again: remove `fix_pool_wait_busy_loop`."""
    code = (
        "from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext as C\n"
        "from chaffee_assets.instance.dagster_internals import interval_is_broken\n"
        "print(interval_is_broken(C))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "True"


def test_upstream_still_ends_a_code_servers_orphan_check_on_an_error():
    """If this fails, Dagster's cleanup thread survives an error in a check: remove `guard_orphan_check`."""
    from dagster._grpc.server import DagsterApiServer

    from chaffee_assets.instance.dagster_internals import orphan_check_dies_on_an_error

    assert orphan_check_dies_on_an_error(DagsterApiServer)


def test_the_probe_leaves_a_loop_that_survives_an_error_alone():
    """A cleanup loop guarded upstream (logging through the server's logger) or renamed: the probe
    answers False, so the code location loads and nothing is patched."""
    from chaffee_assets.instance.dagster_internals import orphan_check_dies_on_an_error

    class Fixed:
        def _check_for_orphaned_runs(self) -> None:
            pass

        def _cleanup_thread(self) -> None:
            while not self._server_termination_event.wait(0.5):
                try:
                    self._check_for_orphaned_runs()
                except Exception:  # noqa: BLE001 - what an upstream fix would look like
                    self._logger.exception("orphan check failed")

    class Renamed:
        def _check_for_orphaned_runs(self) -> None:
            pass

    assert orphan_check_dies_on_an_error(Fixed) is False
    assert orphan_check_dies_on_an_error(Renamed) is False


def test_loading_the_code_location_applies_the_patches():
    code = (
        "import chaffee_assets.definitions\n"
        "from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext as C\n"
        "from dagster._grpc.server import DagsterApiServer as S\n"
        "from chaffee_assets.instance.dagster_internals import interval_is_broken\n"
        "print(interval_is_broken(C), getattr(S._check_for_orphaned_runs, 'chaffee_guarded', False))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == ["False", "True"]


def test_a_guarded_orphan_check_logs_an_error_and_checks_again(caplog):
    """The patched check, driven by Dagster's own cleanup loop: the first check fails (the database
    away), the loop goes on, the second check runs."""
    import logging

    from dagster._grpc.server import DagsterApiServer

    from chaffee_assets.instance import dagster_internals

    assert dagster_internals.guard_orphan_check()
    checks = []

    class Server:
        _logger = logging.getLogger("probe.code_server")
        _server_termination_event = dagster_internals._Stopped()

        def checked(self) -> None:
            checks.append(time.time())
            if len(checks) == 1:
                raise ConnectionError("connection refused")
            self._server_termination_event.flag = True

        _check_for_orphaned_runs = dagster_internals._guarded(checked)

    with caplog.at_level(logging.INFO, logger="probe.code_server"):
        DagsterApiServer._cleanup_thread(Server())
    assert len(checks) == 2
    assert "ConnectionError: connection refused; 1 failed checks" in caplog.text and "trying again" in caplog.text
    assert "again, after 1 failed checks" in caplog.text


def test_a_run_waiting_for_a_gpu_slot_sleeps_and_starts_when_the_slot_is_freed(instance):
    """Dagster 1.13's in-process executor spins while a step waits for a pool slot; patched, it
    sleeps between claim checks."""
    from chaffee_assets.instance import dagster_internals

    assert dagster_internals.apply()["pool_wait_busy_loop"]

    @dg.asset(pool="gpu")
    def needs_the_gpu() -> int:
        return 1

    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    assert storage.claim_concurrency_slot("gpu", "another-run", "transcript").is_claimed

    run = Background(lambda: dg.materialize([needs_the_gpu], instance=instance))
    deadline = time.time() + 60
    while not storage.get_concurrency_info("gpu").pending_steps and time.time() < deadline:
        time.sleep(0.1)
    assert storage.get_concurrency_info("gpu").pending_steps, "the run never queued for the slot"
    waiting_cpu0, t0 = time.process_time(), time.time()
    time.sleep(3.0)
    waiting_cpu = time.process_time() - waiting_cpu0
    assert run.is_alive()  # still waiting: the slot is taken
    # a busy loop takes a whole core (about 3 s of CPU here); sleeping between 0.5 s checks, little
    assert waiting_cpu < 0.3 * (time.time() - t0), f"{waiting_cpu:.2f} s of CPU while waiting"

    storage.free_concurrency_slot_for_step("another-run", "transcript")
    assert run.answer(timeout=60).success


def test_a_run_process_still_announces_itself_as_worker_pid_reads_it():
    """`worker_pid` (the launcher: did a process of the run begin; `dead_worker_pid`: is it gone)
    reads the first event of a run's process: fails the day Dagster words it otherwise."""
    import inspect

    from dagster._grpc import impl

    assert 'f"Started process for run (pid: {pid})."' in inspect.getsource(impl._run_in_subprocess)
