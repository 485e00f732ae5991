"""`chaffee gc`: old models' vectors go only once the configured model covers the archive; with
AUDIO_RETENTION=drop, the stored audio of stored videos goes; a dry run removes nothing."""

from __future__ import annotations

import numpy as np

from chaffee_assets.app.gc import gc
from chaffee_assets.archive import db, writer
from chaffee_assets.lib.artifacts import ArtifactStore
from tests.archive.test_writer import meta, passages, vectors

MINILM = "all-MiniLM-L6-v2"  # the settings' configured model (EMBEDDING_MODEL=minilm)
OLD = "an-older-model"


def test_old_vectors_go_only_once_the_configured_model_covers_every_video(settings, instance):
    with db.connect(settings.database_url) as conn:
        for v in ("v1", "v2"):
            writer.write_video(conn, meta(v), passages(v, 3), vectors(v, 3, model=OLD, dim=8))
        writer.write_video(conn, meta("v1"), passages("v1", 3), vectors("v1", 3, model=MINILM, dim=16))

    report = gc(settings)
    assert report.models_dropped == {} and "covers 1 of 2 videos" in report.models_kept[OLD]
    with db.connect(settings.database_url) as conn:
        assert writer.model_coverage(conn) == {MINILM: (1, 2), OLD: (2, 2)}
        writer.write_video(conn, meta("v2"), passages("v2", 3), vectors("v2", 3, model=MINILM, dim=16))

    assert gc(settings, dry_run=True).models_dropped == {OLD: 2}
    with db.connect(settings.database_url) as conn:
        assert writer.has_index(conn, OLD)  # the dry run removed nothing
    report = gc(settings)
    assert report.models_dropped == {OLD: 6} and report.lines()[0] == f"removed model {OLD}: 6 vectors and its index"
    with db.connect(settings.database_url) as conn:
        assert writer.model_coverage(conn) == {MINILM: (2, 2)}
        assert writer.counts(conn) == {"videos": 2, "segments": 6, "vectors": {MINILM: 6}}
        assert not writer.has_index(conn, OLD)
    assert gc(settings).lines() == ["nothing to remove"]


def test_dropped_retention_removes_the_audio_of_stored_videos_only(settings, instance):
    store = ArtifactStore(settings.artifact_url)
    wave = np.sin(np.arange(16_000 * 3) / 9.0).astype(np.float32) * 0.3
    for v in ("stored", "in-flight"):
        store.save_waveform("audio", v, wave)
    with db.connect(settings.database_url) as conn:
        writer.write_video(conn, meta("stored"), passages("stored", 2), vectors("stored", 2, model=MINILM, dim=16))

    assert gc(settings).audio_files == 0  # AUDIO_RETENTION=keep: audio stays
    dropping = settings.model_copy(update={"audio_retention": "drop"})
    dry = gc(dropping, dry_run=True)
    assert (dry.audio_files, store.has_waveform("audio", "stored")) == (1, True)
    report = gc(dropping)
    assert report.audio_files == 1 and report.audio_bytes == dry.audio_bytes > 10_000
    assert not store.has_waveform("audio", "stored")
    assert store.has_waveform("audio", "in-flight")  # no rows yet: its pipeline still needs it
