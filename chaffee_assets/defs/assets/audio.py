"""`audio`: the video's sound, downloaded with yt-dlp and decoded to 16 kHz mono, stored in the
artifact store, and its speech found once (silero VAD, in the model service): CPU work done here,
outside the `gpu` pool, while other videos' models compute."""

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from chaffee_assets.archive import sources
from chaffee_assets.defs import checks
from chaffee_assets.defs.io import ArtifactIOManager
from chaffee_assets.defs.metadata import served_metadata
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.policies import RETRY, failing_clearly
from chaffee_assets.defs.resources import (
    ArchiveResource,
    DownloaderResource,
    ModelServiceResource,
    SpeechOptionsResource,
)
from chaffee_assets.lib import checks as lib_checks
from chaffee_assets.lib.errors import DownloadError
from chaffee_assets.lib.ids import validate_video_id
from chaffee_assets.lib.types import AudioRef


@dg.asset(
    partitions_def=videos,
    io_manager_key="artifacts",
    kinds={"youtube", "python"},
    group_name="speech",
    code_version="audio-v2",
    retry_policy=RETRY,
    check_specs=checks.specs(checks.AUDIO_DURATION),
    description="yt-dlp download (YouTube, any URL or feed entry yt-dlp reads, or a local file) decoded to "
    "16 kHz mono FLAC in the artifact store, with its speech regions (silero VAD, once per video).",
)
def audio(
    context: dg.AssetExecutionContext,
    archive: ArchiveResource,
    downloader: DownloaderResource,
    artifacts: dg.ResourceParam[ArtifactIOManager],
    models: ModelServiceResource,
    speech_options: SpeechOptionsResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    with failing_clearly(context):
        ref, metadata = _audio(context, archive, downloader, artifacts, models, speech_options.vad_threshold)
        yield dg.Output(ref, metadata=metadata)
        yield from checks.results(context, checks.AUDIO_DURATION, {ref.meta.video_id: lib_checks.audio_duration(ref)})


def fetch_and_store(archive, downloader, artifacts, video_id: str) -> tuple:
    """Download and decode the video's source into the artifact store: (meta, waveform URL, seconds).
    Decoded straight into the stored FLAC: the run never holds the waveform (the service reads it
    from the store)."""
    from chaffee_assets.lib.media.download import fetch_audio_file

    with archive.connect() as conn:
        src = sources.lookup(conn, video_id)
        url = src.url if src else sources.source_url_for(conn, video_id)
    if url is None:
        raise DownloadError(video_id, "no source registered for this video (add it with `chaffee ingest URL` or the sensor)")
    Path(downloader.workdir).mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(dir=downloader.workdir, prefix=f"{video_id}-") as work,
          artifacts.store.writing_waveform("audio", video_id) as (flac, stored)):
        meta = fetch_audio_file(
            url, video_id, Path(work), flac, retries=0,  # transient causes: Dagster retries the step (policies.RETRY)
            title=src.title if src else None, upload_date=src.upload_date if src else None,
            allow_local=src is not None and src.origin == "cli",  # a feed's or the sensor's: http(s) only
            deadline_s=downloader.timeout_seconds, max_bytes=downloader.max_bytes,
        )
    return meta, stored, meta.duration_s


def restore_audio(context, archive, downloader, artifacts, ref: AudioRef) -> None:
    """Fetch a video's audio again when AUDIO_RETENTION=drop removed it after its rows were
    written and a step needs it again (new voices to name, a new whisper model)."""
    if artifacts.store.has_waveform("audio", ref.video_id):
        return
    t0 = time.perf_counter()
    _, _, seconds = fetch_and_store(archive, downloader, artifacts, ref.video_id)
    if abs(seconds - ref.seconds) > 1.0:
        raise DownloadError(ref.video_id, f"its source now gives {seconds:.1f} s of audio, not the {ref.seconds:.1f} s "
                            "it was transcribed from: re-materialise `audio` and what follows")
    context.log.info("video %s: audio fetched again from its source in %.1f s (AUDIO_RETENTION=drop removed it)",
                     ref.video_id, time.perf_counter() - t0)


def _audio(context, archive, downloader, artifacts, models, vad_threshold: float) -> tuple[AudioRef, dict]:
    video_id = validate_video_id(context.partition_key)
    t0 = time.perf_counter()
    meta, stored, seconds = fetch_and_store(archive, downloader, artifacts, video_id)
    fetch_seconds = time.perf_counter() - t0
    served = models.call("speech_regions", stored, video_id, vad_threshold, about=f"video {video_id}")
    ref = AudioRef(meta=meta, url=stored, seconds=seconds, speech=served.value)
    context.log.info("video %s: %r, %.0f s of audio (%.0f s of speech), fetched and decoded in %.1f s",
                     video_id, meta.title, seconds, ref.speech_seconds, fetch_seconds)
    return ref, {
        "title": meta.title,
        "source_url": dg.MetadataValue.url(meta.source_url) if meta.source_url.startswith("http") else meta.source_url,
        "upload_date": meta.upload_date or "",
        "duration_s": round(seconds, 2),
        "speech_s": round(ref.speech_seconds, 2),
        "speech_fraction": round(ref.speech_seconds / seconds, 3) if seconds else 0.0,
        "size_bytes": meta.size_bytes,
        "fetch_decode_seconds": round(fetch_seconds, 2),
        "fetch_decode_rtf": round(fetch_seconds / seconds, 4) if seconds else 0.0,
        **served_metadata(served, audio_seconds=seconds),
    }
