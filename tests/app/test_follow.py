"""How `chaffee ingest` follows a video's run to its end, on a real instance (the runs' records are
written directly: what the daemon would have done to them)."""

from __future__ import annotations

import time
import uuid

from chaffee_assets.app import ingest as ingest_mod
from chaffee_assets.app.ingest import _Follower
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
