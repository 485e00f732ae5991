"""Backfills as the operator launches them: `chaffee dev` (the real webserver and daemon), a backfill
of every asset over several videos sent to the webserver's GraphQL endpoint as the UI sends it, and
the re-embed of every partition with a failed video among them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from chaffee_assets.app.ingest import register
from chaffee_assets.defs.checks import ALL_CHECKS, failing
from chaffee_assets.defs.partitions import run_video
from chaffee_assets.lib.types import Source
from tests.helpers.instances import make_settings, new_database, served_demo_channel
from tests.helpers.processes import chaffee, free_port

pytestmark = pytest.mark.slow

ASSETS = ["audio", "transcript", "diarization", "speaker_labels", "segments", "embeddings", "db_rows"]
VIDEOS = 6
MAX_LAG_S = 30.0  # from a video's transcript to its rows: segments, embeddings, db_rows of an 11 s talk
LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""
OUT = Path(__file__).resolve().parents[2] / "bench" / "out"




def _graphql(port: int, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        answer = json.loads(r.read())
    assert "errors" not in answer, answer
    return answer["data"]


def _wait_for_location(port: int, deadline_s: float = 180) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            entries = _graphql(port, query, {})["workspaceOrError"]["locationEntries"]
            if entries and all(e["locationOrLoadError"] and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                               for e in entries):
                return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"the webserver on port {port} did not load the code location within {deadline_s} s")


def _launch(port: int, assets: list[str], partitions: list[str] | None) -> str:
    params: dict = {"assetSelection": [{"path": [a]} for a in assets]}
    params |= {"partitionNames": partitions} if partitions else {"allPartitions": True}
    answer = _graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    return answer["backfillId"]


def _wait_backfill(instance, backfill_id: str, deadline_s: float = 1200) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        backfill = instance.get_backfill(backfill_id)
        if backfill.status.value not in ("REQUESTED", "CANCELING"):
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            if all(r.is_finished for r in runs):
                return
        time.sleep(2)
    raise AssertionError(f"backfill {backfill_id} not finished after {deadline_s} s")


def _materialized_at(instance, asset: str) -> dict[str, float]:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1000).records
    out: dict[str, float] = {}
    for r in records:
        key = r.asset_materialization.partition
        out[key] = max(out.get(key, 0.0), r.timestamp)
    return out


@pytest.fixture(scope="module")
def ui(pg_server, fixtures_dir, tmp_path_factory, model_service):
    """`chaffee dev` on a fresh instance, the demo channel's JFK speech served as six talks."""
    folder = tmp_path_factory.mktemp("backfill")
    settings = make_settings(folder, new_database(pg_server), ray_address=model_service, download_workers=3,
                             dagster_database_url=new_database(pg_server, "dg", migrate=False))
    port = free_port()
    with served_demo_channel(folder / "channel", fixtures_dir) as channel:
        base_url, media, items = channel
        talk = next(i for i in items if i.video_id == "demo-jfk-flac")
        for n in range(VIDEOS):
            shutil.copyfile(media / talk.filename, media / f"talk-{n}.flac")
        sources = [Source(f"talk-{n}", f"{base_url}/talk-{n}.flac", f"Talk {n}", f"2024-02-0{n + 1}") for n in range(VIDEOS)]
        sources.append(Source("gone-404", f"{base_url}/gone.flac", "A talk that is gone"))
        env = {**os.environ, **settings.to_environment()}
        with chaffee(["dev", "--port", str(port)], env, folder / "dev.log"):
            _wait_for_location(port)
            with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
                register(settings, instance, sources)
                yield settings, instance, port, [s.video_id for s in sources]


def test_a_backfill_makes_each_video_searchable_as_its_own_speech_is_done(ui):
    settings, instance, port, video_ids = ui
    talks = [v for v in video_ids if v.startswith("talk-")]
    backfill_id = _launch(port, ASSETS, talks)
    _wait_backfill(instance, backfill_id)

    transcribed, searchable = _materialized_at(instance, "transcript"), _materialized_at(instance, "db_rows")
    assert set(searchable) >= set(talks), f"not searchable: {set(talks) - set(searchable)}"
    t0 = min(transcribed[v] for v in talks)
    timeline = {v: {"transcript_done_s": round(transcribed[v] - t0, 1), "searchable_s": round(searchable[v] - t0, 1)}
                for v in sorted(talks, key=transcribed.get)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "backfill_timeline.json").write_text(json.dumps(timeline, indent=1))
    print("backfill timeline (s after the first transcript):", json.dumps(timeline))

    # each video searchable within seconds of its own transcript (its passages, vectors and rows),
    # however many videos are queued behind it: the first long before the last is transcribed
    order = sorted(talks, key=transcribed.get)
    lags = [searchable[v] - transcribed[v] for v in order]
    assert max(lags) <= MAX_LAG_S, timeline
    assert searchable[order[0]] < transcribed[order[-1]], timeline
    # one run per video, over the whole chain
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert sorted(run_video(r.tags) for r in runs) == sorted(talks)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # every stage's check ran for every video, and passed
    for check in ALL_CHECKS:
        key = dg.AssetCheckKey(dg.AssetKey(check.asset), check.name)
        infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info([key])}
        for v in talks:
            assert v in infos and str(infos[v].latest_execution_status.value) == "SUCCEEDED", (check, v)
    assert not failing(instance, ALL_CHECKS)


def test_reembed_of_every_partition_skips_a_failed_video_and_embeds_the_others(ui):
    settings, instance, port, video_ids = ui
    talks = [v for v in video_ids if v.startswith("talk-")]
    failed_id = _launch(port, ASSETS, ["gone-404"])  # the video whose download fails
    _wait_backfill(instance, failed_id)
    [failed_run] = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": failed_id}))
    assert failed_run.status == dg.DagsterRunStatus.FAILURE

    before = _materialized_at(instance, "db_rows")
    backfill_id = _launch(port, ["embeddings", "db_rows"], None)  # "all partitions", as the UI offers
    _wait_backfill(instance, backfill_id)
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert {run_video(r.tags) for r in runs} == set(video_ids)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [(run_video(r.tags), r.status) for r in runs]
    after = _materialized_at(instance, "db_rows")
    assert all(after[v] > before[v] for v in talks)  # every video with passages embedded again
    assert "gone-404" not in after  # the failed one skipped, reported in its run's log
    [gone_run] = [r for r in runs if run_video(r.tags) == "gone-404"]
    messages = [e.message or "" for e in instance.all_logs(gone_run.run_id)]
    assert any("skipped 1 videos without passages" in m for m in messages)


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def _browse(browser: str, url: str, screenshot: Path) -> str:
    """The page rendered by headless Chromium (the UI is a single-page app: it is given time to
    load its data): a screenshot, and the rendered DOM."""
    common = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1600,1000",
              "--virtual-time-budget=20000", "--run-all-compositor-stages-before-draw"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=120)
    return subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, timeout=120, text=True).stdout


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (apt install chromium)")
def test_the_ui_shows_the_asset_graph_and_each_videos_checks_in_a_real_browser(ui):
    settings, instance, port, video_ids = ui
    browser = _chromium()
    OUT.mkdir(parents=True, exist_ok=True)
    _graphql(port, "mutation { setNuxSeen }", {})  # the UI's first-visit newsletter dialog, dismissed
    lineage = f"http://127.0.0.1:{port}/assets/db_rows?view=lineage&lineageScope=upstream&lineageDepth=6"
    graph = _browse(browser, lineage, OUT / "ui_asset_graph.png")
    for asset in ("audio", "transcript", "diarization", "speaker_labels", "segments", "embeddings", "db_rows"):
        assert asset in graph, f"{asset} not in the rendered asset graph"
    checks = _browse(browser, f"http://127.0.0.1:{port}/assets/transcript?view=checks", OUT / "ui_transcript_checks.png")
    assert "plausible" in checks and "trusted" in checks
    assert (OUT / "ui_asset_graph.png").stat().st_size > 10_000 and (OUT / "ui_transcript_checks.png").stat().st_size > 10_000
