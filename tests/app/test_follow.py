"""How `chaffee ingest` follows a video's run to its end, on a real instance (the runs' records are
written directly: what the daemon would have done to them)."""

from __future__ import annotations

import time
import uuid

from chaffee_assets.app import ingest as ingest_mod
from chaffee_assets.app.ingest import _Follower
from chaffee_assets.instance.setup import write_workspace
from tests.helpers.instances import dagster_instance, make_settings, new_database


def _failed_run(instance, **tags):
    from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus

    run = DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), status=DagsterRunStatus.FAILURE,
                     tags={"dagster/partition": "talk", **tags})
    return instance.add_run(run)


def _followed(instance):
    """A failed run Dagster says it will retry, a follower on it, and the lines it printed after one look."""
    run = _failed_run(instance, **{"dagster/will_retry": "true"})
    lines: list[str] = []
    f = _Follower("talk", run.run_id, 1, 1)
    f.step(instance, lines.append)
    return run, f, lines


def test_a_retry_dagster_promised_but_never_created_ends_the_video_instead_of_hanging(pg_server, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_mod, "RETRY_CREATION_S", 2.0)
    settings = make_settings(tmp_path, new_database(pg_server))
    with dagster_instance(pg_server, settings) as instance:
        run, f, lines = _followed(instance)
        assert f.outcome is None, "gave up on the retry at once"
        time.sleep(2.2)
        f.step(instance, lines.append)
        assert f.outcome is not None and not f.outcome.ok
        assert "no retry appeared in 2 s" in f.outcome.error and "daemon.log" in f.outcome.error
        assert lines and "talk: FAILED" in lines[-1]


def test_a_retry_that_appears_is_followed(pg_server, tmp_path):
    settings = make_settings(tmp_path, new_database(pg_server))
    with dagster_instance(pg_server, settings) as instance:
        run, f, lines = _followed(instance)
        assert f.outcome is None
        retry = _failed_run(instance, **{"dagster/parent_run_id": run.run_id, "dagster/will_retry": "false"})
        f.step(instance, lines.append)
        assert f.run_id == retry.run_id and f.attempts == 2 and "retried (attempt 2)" in lines[-1]
        f.step(instance, lines.append)  # the retry failed for good: final, with no wait
        assert f.outcome is not None and not f.outcome.ok and f.outcome.attempts == 2
        assert "no retry appeared" not in f.outcome.error


def _run_failed_outside_its_steps(settings, instance) -> str:
    """A real run of the whole chain, submitted to the queue (no daemon: never launched), then failed
    the way run monitoring fails a run whose process died: Dagster promises its retry."""
    from chaffee_assets.instance import dagster_internals as internals

    with ingest_mod._environment(settings.to_environment()), internals.workspace_context(instance, write_workspace(settings)) as ctx:
        [run_id] = internals.submit_runs(ctx, instance, [({"dagster/partition": "talk"}, ingest_mod.ALL_ASSETS)])
    instance.report_run_failed(instance.get_run_by_id(run_id), message="its process died (the test)")
    assert instance.get_run_by_id(run_id).tags.get("dagster/will_retry") == "true"
    return run_id


def _retries_of(instance, run_id: str) -> list:
    from dagster._core.storage.dagster_run import RunsFilter

    return instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run_id}))


def test_a_promised_retry_the_daemon_never_made_is_made_from_the_ingest(pg_server, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_mod, "RETRY_NUDGE_S", 0.0)
    settings = make_settings(tmp_path, new_database(pg_server))
    with dagster_instance(pg_server, settings) as instance:
        failed = _run_failed_outside_its_steps(settings, instance)
        lines: list[str] = []
        f = _Follower("talk", failed, 1, 1, retry_here=ingest_mod._retry_here(settings, instance, write_workspace(settings)))
        f.step(instance, lines.append)  # no daemon here: the retry is made by this look
        assert "did not appear in 0 s; retrying it from here" in lines[-1]
        f.step(instance, lines.append)
        [retry] = _retries_of(instance, failed)
        assert f.run_id == retry.run_id and f.attempts == 2 and "retried (attempt 2)" in lines[-1]
        assert instance.get_run_by_id(retry.run_id).status.value == "QUEUED"  # submitted: the daemon launches it
        for _ in range(3):
            f.step(instance, lines.append)
        assert len(_retries_of(instance, failed)) == 1 and f.outcome is None


def test_a_retry_made_but_never_submitted_is_submitted_from_the_ingest(pg_server, tmp_path, monkeypatch):
    """The daemon died between making the retry and submitting it."""
    monkeypatch.setattr(ingest_mod, "RETRY_NUDGE_S", 0.0)
    settings = make_settings(tmp_path, new_database(pg_server))
    with dagster_instance(pg_server, settings) as instance:
        failed = _run_failed_outside_its_steps(settings, instance)
        retry_here = ingest_mod._retry_here(settings, instance, write_workspace(settings))

        def died(*_a, **_k):
            raise RuntimeError("the daemon died here")

        with monkeypatch.context() as m:
            m.setattr(type(instance), "submit_run", died)
            try:
                retry_here(failed)
            except RuntimeError:
                pass
        [made] = _retries_of(instance, failed)
        assert made.status.value == "NOT_STARTED"
        lines: list[str] = []
        f = _Follower("talk", failed, 1, 1, retry_here=retry_here)
        f.step(instance, lines.append)  # follows the retry the daemon made
        assert f.run_id == made.run_id
        f.step(instance, lines.append)
        assert "created but not submitted; retrying it from here" in lines[-1]
        assert instance.get_run_by_id(made.run_id).status.value == "QUEUED" and len(_retries_of(instance, failed)) == 1
