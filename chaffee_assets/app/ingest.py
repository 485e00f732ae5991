"""Running the pipeline without a daemon (`chaffee ingest`, `chaffee reembed`, `chaffee demo`):
each video is its own run on the project's Dagster instance, so the UI shows the same history as
runs launched by the sensor or a backfill."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg

from chaffee_assets.archive import db, sources
from chaffee_assets.defs.assets import all_assets
from chaffee_assets.defs.build import build_resources
from chaffee_assets.defs.metadata import step_seconds
from chaffee_assets.defs.partitions import videos
from chaffee_assets.instance.model_service import head_file
from chaffee_assets.instance.setup import archive_url
from chaffee_assets.lib.ids import id_for_source, youtube_id
from chaffee_assets.lib.types import Source
from chaffee_assets.settings import Settings

log = logging.getLogger(__name__)

_FEED_SUFFIXES = (".rss", ".xml", ".atom")
_CHANNEL_MARKERS = ("/@", "/channel/", "/c/", "/user/", "/playlist", "list=")


@dataclass
class VideoOutcome:
    video_id: str
    ok: bool
    seconds: float
    error: str | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)


def is_feed(source: str) -> bool:
    """A channel, playlist or RSS/Atom feed (listed), as opposed to one video or media file."""
    if "://" not in source:
        return Path(source).suffix.lower() in _FEED_SUFFIXES
    if youtube_id(source):
        return False
    path = urlparse(source).path.lower()
    return path.endswith(_FEED_SUFFIXES) or any(m in source for m in _CHANNEL_MARKERS)


def expand(items: Iterable[str]) -> list[Source]:
    """Sources for command-line items: files, media URLs, YouTube videos, channels and feeds."""
    from chaffee_assets.lib.media.feed import list_channel

    out: list[Source] = []
    for item in items:
        if is_feed(item):
            url = Path(item).resolve().as_uri() if "://" not in item else item
            out.extend(list_channel(url))
        elif "://" not in item:
            path = Path(item).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {item}")
            out.append(Source(id_for_source(str(path)), str(path), path.stem))
        else:
            out.append(Source(id_for_source(item), item))
    return out


def register(settings: Settings, instance: dg.DagsterInstance, items: list[Source]) -> list[str]:
    """Record the videos' sources and make them `videos` partitions; returns the ids that were new."""
    with db.connect(archive_url(settings)) as conn:
        sources.register(conn, items)
    known = set(instance.get_dynamic_partitions(videos.name))
    new = [s.video_id for s in items if s.video_id not in known]
    if new:
        instance.add_dynamic_partitions(videos.name, new)
    return new


def _first_failure(result: dg.ExecuteInProcessResult) -> str:
    for ev in result.all_events:
        if ev.event_type_value == "STEP_FAILURE":
            err = ev.step_failure_data.error
            msg = err.cause.message if err and err.cause else (err.message if err else "failed")
            return f"{ev.step_key}: {msg.strip().splitlines()[-1] if msg.strip() else msg}"
    return "run failed"


def _quiet(log_level: str) -> dict:
    """Run config: Dagster's console log at `log_level` (every event is in the run's log anyway)."""
    return {"loggers": {"console": {"config": {"log_level": log_level}}}}


def run_videos(
    settings: Settings,
    instance: dg.DagsterInstance,
    video_ids: list[str],
    progress: Callable[[str], None] = print,
    log_level: str = "WARNING",
) -> list[VideoOutcome]:
    """One run per video over the whole chain; a failed video does not stop the others."""
    assets = all_assets(settings.embedding_model)
    resources = build_resources(settings, archive_url(settings), str(head_file(settings)))
    outcomes = []
    for n, video_id in enumerate(video_ids, 1):
        progress(f"[{n}/{len(video_ids)}] {video_id}: running")
        t0 = time.perf_counter()
        result = dg.materialize(
            assets, instance=instance, resources=resources, partition_key=video_id, raise_on_error=False,
            tags={"chaffee/launched_by": "chaffee ingest"}, run_config=_quiet(log_level),
        )
        seconds = time.perf_counter() - t0
        steps = step_seconds(instance, result.run_id)
        if result.success:
            detail = ", ".join(f"{k} {v:.1f}s" for k, v in steps.items())
            progress(f"[{n}/{len(video_ids)}] {video_id}: done in {seconds:.1f} s ({detail})")
            outcomes.append(VideoOutcome(video_id, True, seconds, step_seconds=steps))
        else:
            error = _first_failure(result)
            progress(f"[{n}/{len(video_ids)}] {video_id}: FAILED after {seconds:.1f} s: {error}")
            outcomes.append(VideoOutcome(video_id, False, seconds, error, steps))
    return outcomes


def reembed(
    settings: Settings, instance: dg.DagsterInstance, progress: Callable[[str], None] = print, log_level: str = "WARNING"
) -> list[str]:
    """Materialise `embeddings` and `db_rows` for every video that has passages, as batched steps
    (one per contiguous range of partitions): nothing is downloaded or transcribed."""
    from chaffee_assets.lib.artifacts import ArtifactStore
    from chaffee_assets.lib.types import Passages

    store = ArtifactStore(settings.artifact_url)
    keys = instance.get_dynamic_partitions(videos.name)
    ready = [k for k in keys if store.exists("segments", k, Passages)]
    ranges: list[list[str]] = []
    for k in keys:
        if k in ready:
            if ranges and ranges[-1][-1] == keys[keys.index(k) - 1]:
                ranges[-1].append(k)
            else:
                ranges.append([k])
    assets = all_assets(settings.embedding_model)
    resources = build_resources(settings, archive_url(settings), str(head_file(settings)))
    done: list[str] = []
    for r in ranges:
        progress(f"re-embedding {len(r)} videos ({r[0]} … {r[-1]}) with {settings.embedding_model}")
        result = dg.materialize(
            assets,
            selection=["embeddings", "db_rows"],
            instance=instance,
            resources=resources,
            tags={"dagster/asset_partition_range_start": r[0], "dagster/asset_partition_range_end": r[-1]},
            raise_on_error=False,
            run_config=_quiet(log_level),
        )
        if not result.success:
            raise RuntimeError(f"re-embedding failed: {_first_failure(result)}")
        done.extend(r)
    return done
