"""AUDIO_RETENTION=drop through the real pipeline: the audio leaves the artifact store once the
video's rows are written, and a later re-naming run fetches it again from the source."""

from __future__ import annotations

import pytest

from chaffee_assets.app.ingest import ingest, refresh, register
from chaffee_assets.app.search import search
from chaffee_assets.lib.artifacts import ArtifactStore
from chaffee_assets.lib.types import AudioRef, Source
from tests.helpers.instances import dagster_instance, make_settings, new_database, served_demo_channel

pytestmark = pytest.mark.slow


def test_dropped_audio_is_fetched_again_when_a_step_needs_it(pg_server, fixtures_dir, tmp_path, model_service):
    settings = make_settings(tmp_path, new_database(pg_server), ray_address=model_service, audio_retention="drop")
    with dagster_instance(pg_server, settings) as instance, served_demo_channel(tmp_path / "channel", fixtures_dir) as channel:
        base_url, _, items = channel
        jfk = next(i for i in items if i.video_id == "demo-jfk-flac")
        register(settings, instance, [Source(jfk.video_id, f"{base_url}/{jfk.filename}", jfk.title, jfk.upload_date)])
        [outcome] = ingest(settings, [jfk.video_id], progress=lambda _: None)
        assert outcome.ok, outcome.error
        store = ArtifactStore(settings.artifact_url)
        assert not store.has_waveform("audio", jfk.video_id)  # dropped after db_rows
        assert store.exists("audio", jfk.video_id, AudioRef)  # what is known of it stays
        record = instance.fetch_materializations(_key("db_rows"), limit=1).records[0]
        assert record.asset_materialization.metadata["audio_dropped_bytes"].value > 50_000
        assert "ask not" in search("what can I do for my country", k=1, settings=settings)[0].text.lower()

        [again] = refresh(settings, [jfk.video_id], ["speaker_labels", "segments", "embeddings", "db_rows"], progress=lambda _: None)
        assert again.ok, again.error
        logs = [e.message or "" for e in instance.all_logs(again.run_id)]
        assert any("audio fetched again from its source" in m for m in logs)
        assert not store.has_waveform("audio", jfk.video_id)  # and dropped again
        assert "ask not" in search("what can I do for my country", k=1, settings=settings)[0].text.lower()


def _key(asset: str):
    import dagster as dg

    return dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset))
