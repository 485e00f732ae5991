"""The asset-check adapters on a real instance (Postgres): a failed blocking check stops its video
with the finding as the cause and no retry, shows per video in the instance and in `chaffee
status`; the channel's freshness check fails when nothing has been downloaded for the window."""

import time

import dagster as dg
import pytest

from chaffee_assets.app.cli import video_states
from chaffee_assets.defs import checks
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.policies import RETRY
from chaffee_assets.lib.types import Check
from tests.helpers.instances import dagster_instance, make_settings

BAD = checks.CheckDef("segments", "bounded", "test copy of the passages check")


@dg.asset(name="segments", partitions_def=videos, retry_policy=RETRY, check_specs=checks.specs(BAD), io_manager_key="mem")
def fake_segments(context: dg.AssetExecutionContext):
    yield dg.Output(context.partition_key)
    good = context.partition_key != "bad-video"
    found = Check(good, "10 passages" if good else "12 words but no passages", {"words": 12})
    yield from checks.results(context, BAD, {context.partition_key: found})


@dg.asset(name="embeddings", partitions_def=videos, io_manager_key="mem")
def fake_embeddings(segments):
    return segments


@pytest.fixture
def instance(pg_server, tmp_path):
    with dagster_instance(pg_server, make_settings(tmp_path, "postgresql://unused")) as inst:
        inst.add_dynamic_partitions("videos", ["good-video", "bad-video"])
        yield inst


def _run(instance, partition: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([fake_segments, fake_embeddings], partition_key=partition, instance=instance,
                          resources={"mem": dg.InMemoryIOManager()}, raise_on_error=False)


def test_a_failed_blocking_check_stops_its_video_with_the_finding_and_no_retry(instance):
    assert _run(instance, "good-video").success
    bad = _run(instance, "bad-video")
    assert not bad.success
    failures = [e for e in bad.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["segments"]
    assert "12 words but no passages" in failures[0].event_specific_data.error.message
    assert not [e for e in bad.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert "embeddings" not in {e.step_key for e in bad.all_events if e.event_type_value == "STEP_SUCCESS"}
    # the output is kept (materialised, to look at) and the check is the video's own
    assert set(instance.get_materialized_partitions(dg.AssetKey("segments"))) == {"good-video", "bad-video"}
    assert checks.failing(instance, (BAD,)) == {"bad-video": ["segments/bounded"]}
    assert video_states(instance)["checks"] == {"bad-video": ["segments/bounded"]}


def test_the_channel_freshness_check_fails_when_nothing_was_downloaded_for_the_window(instance):
    window_days = 3 / 86400  # 3 s
    freshness = checks.channel_freshness(window_days)
    job = dg.define_asset_job("freshness", selection=dg.AssetSelection.checks(*freshness[0].check_keys))
    defs = dg.Definitions(assets=[dg.AssetSpec("audio", partitions_def=videos)], asset_checks=freshness, jobs=[job])

    def evaluate() -> bool:
        result = defs.resolve_job_def("freshness").execute_in_process(instance=instance, raise_on_error=False)
        [evaluation] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        return evaluation.passed

    assert not evaluate()  # nothing ever downloaded
    instance.report_runless_asset_event(dg.AssetMaterialization("audio", partition="good-video"))
    assert evaluate()
    time.sleep(4)
    assert not evaluate()  # quiet for longer than the window

