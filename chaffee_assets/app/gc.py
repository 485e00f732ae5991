"""`chaffee gc`: remove what the archive no longer needs, once that is safe.

- Vectors (and the HNSW index) of embedding models other than EMBEDDING_MODEL, but only once
  EMBEDDING_MODEL covers every video with passages: search keeps answering from an older model
  until then, so its vectors stay.
- With AUDIO_RETENTION=drop, the stored audio of videos whose rows are in the archive (`db_rows`
  drops each video's own as it writes them; this catches videos stored before the setting
  changed). Videos with a run in progress are left alone.

Nothing else is model-specific: each asset's artifact is one file per video, replaced when the
asset is materialised again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from chaffee_assets.archive import db, writer
from chaffee_assets.lib.artifacts import ArtifactStore
from chaffee_assets.lib.models.registry import embedding_model_id
from chaffee_assets.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class GcReport:
    dry_run: bool
    configured_model: str
    models_dropped: dict[str, int] = field(default_factory=dict)  # model → vectors removed
    models_kept: dict[str, str] = field(default_factory=dict)  # model → why it stays
    audio_files: int = 0
    audio_bytes: int = 0
    videos_busy: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} model {m}: {n:,} vectors and its index" for m, n in self.models_dropped.items()]
        out += [f"kept model {m}: {why}" for m, why in self.models_kept.items()]
        if self.audio_files or self.audio_bytes:
            out.append(f"{verb} the audio of {self.audio_files} videos ({self.audio_bytes / 1e6:.1f} MB)")
        if self.videos_busy:
            out.append(f"left alone, a run in progress: {', '.join(self.videos_busy[:10])}")
        return out or ["nothing to remove"]


def gc(settings: Settings, dry_run: bool = False) -> GcReport:
    from chaffee_assets.instance.setup import archive_url

    configured = embedding_model_id(settings.embedding_model)
    report = GcReport(dry_run=dry_run, configured_model=configured)
    with db.connect(archive_url(settings)) as conn:
        infos = writer.model_infos(conn)
        current = next((i for i in infos if i.model == configured), None)
        for info in infos:
            if info.model == configured:
                continue
            if current is None or not current.complete:
                have = current.videos_covered if current else 0
                report.models_kept[info.model] = (f"{configured} covers {have} of {info.videos_with_passages} videos; "
                                                  "search still answers from older models (re-embed first)")
                continue
            report.models_dropped[info.model] = info.videos_covered if dry_run else writer.drop_model(conn, info.model)
        if settings.audio_retention == "drop":
            with conn.transaction():
                stored = [r[0] for r in conn.execute("SELECT video_id FROM videos WHERE passages > 0 ORDER BY video_id")]
        else:
            stored = []
    if stored:
        busy = _videos_in_progress(settings)
        report.videos_busy = tuple(sorted(busy & set(stored)))
        store = ArtifactStore(settings.artifact_url)
        for vid in stored:
            if vid in busy or not store.has_waveform("audio", vid):
                continue
            size = store.fs.size(store.path("audio", vid, ".flac")) if dry_run else store.delete_waveform("audio", vid)
            report.audio_files += 1
            report.audio_bytes += int(size)
    return report


def _videos_in_progress(settings: Settings) -> set[str]:
    import dagster as dg

    from chaffee_assets.defs.partitions import run_video
    from chaffee_assets.instance.setup import dagster_instance

    statuses = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    with dagster_instance(settings) as instance:
        runs = instance.get_runs(dg.RunsFilter(statuses=statuses))
    return {v for r in runs if (v := run_video(r.tags))}
