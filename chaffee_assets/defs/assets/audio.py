"""`audio`: the video's sound, downloaded with yt-dlp and decoded to 16 kHz mono."""


import tempfile
import time
from pathlib import Path

import dagster as dg

from chaffee_assets.archive import sources, writer
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.resources import ArchiveResource, DownloaderResource
from chaffee_assets.lib.errors import DownloadError
from chaffee_assets.lib.ids import validate_video_id
from chaffee_assets.lib.types import Audio

PER_VIDEO = dg.BackfillPolicy.multi_run(max_partitions_per_run=1)


@dg.asset(
    partitions_def=videos,
    io_manager_key="artifacts",
    backfill_policy=PER_VIDEO,
    kinds={"youtube", "python"},
    group_name="speech",
    code_version="audio-v1",
    description="yt-dlp download (YouTube, any URL or feed entry yt-dlp reads, or a local file) decoded to 16 kHz mono.",
)
def audio(context: dg.AssetExecutionContext, archive: ArchiveResource, downloader: DownloaderResource) -> Audio:
    from chaffee_assets.lib.media.download import fetch_audio

    video_id = validate_video_id(context.partition_key)
    with archive.connect() as conn:
        src = sources.lookup(conn, video_id)
        url = src.url if src else sources.source_url_for(conn, video_id)
    if url is None:
        raise DownloadError(video_id, "no source registered for this video (add it with `chaffee ingest URL` or the sensor)")

    Path(downloader.workdir).mkdir(parents=True, exist_ok=True)
    started_at = time.time()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=downloader.workdir, prefix=f"{video_id}-") as work:
        result = fetch_audio(
            url,
            video_id,
            Path(work),
            retries=downloader.retries,
            backoff_s=downloader.backoff_seconds,
            title=src.title if src else None,
            upload_date=src.upload_date if src else None,
        )
    seconds = time.perf_counter() - t0

    with archive.connect() as conn:
        writer.upsert_video_meta(conn, result.meta)
    meta = result.meta
    context.log.info("video %s: %r, %.0f s of audio, fetched and decoded in %.1f s", video_id, meta.title, result.seconds, seconds)
    context.add_output_metadata(
        {
            "title": meta.title,
            "source_url": dg.MetadataValue.url(meta.source_url) if meta.source_url.startswith("http") else meta.source_url,
            "upload_date": meta.upload_date or "",
            "duration_s": round(result.seconds, 2),
            "size_bytes": meta.size_bytes,
            "fetch_decode_seconds": round(seconds, 2),
            "real_time_factor": round(seconds / result.seconds, 4) if result.seconds else 0.0,
            "timeline": dg.MetadataValue.json({"fetch_decode": [round(started_at, 3), round(started_at + seconds, 3)]}),
        }
    )
    return result
