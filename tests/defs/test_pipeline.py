"""The whole chain through Dagster on a real instance (Postgres), the real daemon launching the runs
from its queue, the real model service, real yt-dlp downloads from 127.0.0.1: a monologue, an
interview and a broken video in the same ingest."""

from __future__ import annotations

import dagster as dg
import pytest

from chaffee_assets.app.ingest import ingest, reembed, register
from chaffee_assets.app.search import search
from chaffee_assets.archive import db, writer
from chaffee_assets.archive.search import choose_model
from chaffee_assets.lib.types import Source
from tests.helpers.instances import dagster_instance, make_settings, new_database, served_demo_channel

pytestmark = pytest.mark.slow


def _meta(instance, asset: str, partition: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{asset}[{partition}] not materialised"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _ingest(settings, instance, base_url, items, extra=()):
    srcs = [Source(i.video_id, f"{base_url}/{i.filename}", i.title, i.upload_date) for i in items]
    srcs += list(extra)
    register(settings, instance, srcs)
    return {o.video_id: o for o in ingest(settings, [s.video_id for s in srcs], progress=lambda _: None)}


# One ingest for the module (real models on CPU take a minute); the tests below read what it left,
# in order: the re-embed test runs last because it adds a second model.
@pytest.fixture(scope="module")
def world(pg_server, fixtures_dir, tmp_path_factory, model_service):
    folder = tmp_path_factory.mktemp("pipeline")
    settings = make_settings(folder, new_database(pg_server), ray_address=model_service)
    with dagster_instance(pg_server, settings) as instance, served_demo_channel(folder / "channel", fixtures_dir) as channel:
        yield settings, instance, channel


@pytest.fixture(scope="module")
def ingested(world):
    settings, instance, (base_url, _, items) = world
    chosen = [i for i in items if i.video_id in ("demo-jfk-flac", "demo-interview")]
    broken = Source("broken-404", f"{base_url}/no-such-talk.m4a", "A talk that is gone")
    outcomes = _ingest(settings, instance, base_url, chosen, [broken])
    return base_url, chosen, outcomes


@pytest.fixture
def settings(world):
    return world[0]


@pytest.fixture
def instance(world):
    return world[1]


def test_ingest_through_dagster_stores_searchable_labelled_passages(settings, instance, ingested):
    base_url, items, outcomes = ingested
    assert outcomes["demo-jfk-flac"].ok and outcomes["demo-interview"].ok
    # the broken video fails alone, with its id and the cause, and writes nothing
    bad = outcomes["broken-404"]
    assert not bad.ok and "broken-404" in bad.error and "404" in bad.error

    with db.connect(settings.database_url) as conn:
        c = writer.counts(conn)
        videos = {r[0] for r in conn.execute("SELECT video_id FROM videos")}
        speakers = {r[0] for r in conn.execute("SELECT DISTINCT speaker FROM segments WHERE video_id = 'demo-interview'")}
    assert videos == {"demo-jfk-flac", "demo-interview"}
    assert c["segments"] > 0 and c["vectors"] == {"all-MiniLM-L6-v2": c["segments"]}
    assert len(speakers) == 2 and all(s.startswith("Guest") or s == "Chaffee" for s in speakers)

    # the monologue took the fast path, the interview did not (DIARIZATION=hybrid: the check, then
    # ECAPA clustering); the check's numbers are in the metadata
    jfk = _meta(instance, "diarization", "demo-jfk-flac")
    interview = _meta(instance, "diarization", "demo-interview")
    assert jfk["fast_path"] is True and jfk["monologue_decision"] == "one" and "seconds_pyannote" not in jfk
    assert jfk["monologue_foreign_seconds"] == 0.0 and jfk["monologue_windows"] >= 2
    assert interview["fast_path"] is False and interview["method"] == "simple" and interview["speakers"] == 2
    assert interview["monologue_decision"] == "several" and "seconds_pyannote" not in interview
    tr = _meta(instance, "transcript", "demo-jfk-flac")
    assert tr["words"] >= 20 and 0 < tr["rtf_whisper"] < 1 and tr["model"] == "tiny.en"
    assert _meta(instance, "audio", "demo-jfk-flac")["title"] == "Ask not (FLAC)"

    # search finds the line at the right second, with a link there
    hits = search("ask what you can do for your country", k=3, settings=settings)
    top = hits[0]
    assert top.video_id == "demo-jfk-flac" and "your country" in top.text.lower()
    assert top.start <= 8.0 <= top.end + 1.0
    assert top.url.startswith(f"{base_url}/demo-jfk-flac.flac#t=")


def test_the_ui_metadata_says_where_each_video_spent_its_time(instance, ingested):
    """Per-video timings an operator reads in the UI, as flat numbers Dagster plots: seconds and
    real-time factor per model (measured in the model service), and on the last step the seconds
    of each stage of the run."""
    tr = _meta(instance, "transcript", "demo-jfk-flac")
    assert tr["seconds_whisper"] > 0 and 0 < tr["inference_rtf"] < 1
    assert tr["seconds_language_check"] > 0  # tiny.en's windows heard by the language check: its own model
    assert tr["inference_seconds"] == pytest.approx(tr["seconds_whisper"] + tr["seconds_language_check"], abs=0.01)
    assert tr["service_replica"]  # which replica answered
    audio = _meta(instance, "audio", "demo-jfk-flac")
    assert audio["seconds_silero_vad"] > 0 and 0 < audio["speech_s"] <= audio["duration_s"]

    # the interview's clustering and the monologue's check both embed ECAPA windows: per model
    interview = _meta(instance, "diarization", "demo-interview")
    monologue = _meta(instance, "diarization", "demo-jfk-flac")
    assert interview["seconds_ecapa"] > monologue["seconds_ecapa"] > 0 and "seconds_pyannote" not in interview

    rows = _meta(instance, "db_rows", "demo-interview")
    stages = {k.removeprefix("run_seconds_"): v for k, v in rows.items() if k.startswith("run_seconds_")}
    assert {"audio", "transcript", "diarization", "speaker_labels", "segments", "embeddings"} <= set(stages)
    assert rows["run_seconds"] >= sum(stages.values()) - 0.01


def test_speaker_labels_alone_names_the_stored_turns_without_whisper_or_pyannote(settings, instance, ingested):
    """`transcript`, `diarization` and `speaker_labels` are made by one `gpu` step (`speech`);
    selecting one of them (what re-naming after `chaffee enroll` does) computes only that one and
    reads the others back from the artifact store."""
    from chaffee_assets.defs.assets import all_assets
    from chaffee_assets.defs.build import build_resources

    before = _meta(instance, "speaker_labels", "demo-interview")
    result = dg.materialize(
        all_assets(settings.embedding_model), selection=["speaker_labels"], instance=instance,
        resources=build_resources(settings, settings.database_url), partition_key="demo-interview",
    )
    assert result.success
    steps = {e.step_key for e in instance.all_logs(result.run_id) if e.step_key}
    made = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert steps == {"speech"} and made == {"speaker_labels"}
    after = _meta(instance, "speaker_labels", "demo-interview")
    assert after["words_labelled"] == before["words_labelled"] > 0
    assert after["speakers"] == before["speakers"]
    assert not any(k in after for k in ("seconds_whisper", "seconds_pyannote"))  # nothing but naming in this run
    assert after["seconds_ecapa"] > 0


def test_rerun_replaces_and_never_duplicates(settings, instance, ingested):
    base_url, items, _ = ingested
    with db.connect(settings.database_url) as conn:
        before = writer.counts(conn)
    outcomes = _ingest(settings, instance, base_url, items)
    assert all(o.ok for o in outcomes.values())
    with db.connect(settings.database_url) as conn:
        assert writer.counts(conn) == before


def test_reembed_with_a_second_model_runs_only_embeddings_and_db_rows(settings, instance, ingested):
    new = settings.model_copy(update={"embedding_model": "mpnet"})
    runs_before = {r.run_id for r in instance.get_runs()}

    # configured model without vectors yet: search keeps answering from the old one
    assert search("ask not what your country can do for you", k=1, settings=new)[0].video_id == "demo-jfk-flac"
    with db.connect(settings.database_url) as conn:
        assert choose_model(conn, "all-mpnet-base-v2") == "all-MiniLM-L6-v2"

    done = reembed(new, progress=lambda _: None)
    assert set(done) == {"demo-jfk-flac", "demo-interview"}

    new_runs = [r for r in instance.get_runs() if r.run_id not in runs_before]
    assert len(new_runs) == 1  # one batched step over both videos
    steps = {e.step_key for e in instance.all_logs(new_runs[0].run_id) if e.step_key}
    assert steps == {"embeddings", "db_rows"}  # nothing downloaded or transcribed

    with db.connect(settings.database_url) as conn:
        c = writer.counts(conn)
        assert choose_model(conn, "all-mpnet-base-v2") == "all-mpnet-base-v2"
    assert c["vectors"]["all-mpnet-base-v2"] == c["vectors"]["all-MiniLM-L6-v2"] == c["segments"]
    assert search("ask not what your country can do for you", k=1, settings=new)[0].video_id == "demo-jfk-flac"


def test_a_silent_video_goes_through_every_asset_and_writes_no_passages(settings, instance, ingested, tmp_path):
    import numpy as np
    import soundfile as sf

    silent = tmp_path / "silent-talk.wav"
    sf.write(silent, np.zeros(16_000 * 5, dtype=np.float32), 16_000)
    register(settings, instance, [Source("silent-talk", str(silent), "Nothing said", origin="cli")])
    [outcome] = ingest(settings, ["silent-talk"], progress=lambda _: None)
    assert outcome.ok, outcome.error
    assert _meta(instance, "transcript", "silent-talk")["empty"] is True
    assert _meta(instance, "segments", "silent-talk")["passages"] == 0
    with db.connect(settings.database_url) as conn:
        n = conn.execute("SELECT count(*) FROM segments WHERE video_id = 'silent-talk'").fetchone()[0]
        title = conn.execute("SELECT title FROM videos WHERE video_id = 'silent-talk'").fetchone()[0]
    assert n == 0 and title == "Nothing said"

