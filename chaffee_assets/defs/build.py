"""Wires the settings object into resources, assets, sensors and the executor."""

from __future__ import annotations

import os

import dagster as dg

from chaffee_assets.defs.assets import all_assets
from chaffee_assets.defs.checks import channel_freshness, freshness_sensor
from chaffee_assets.defs.io import ArtifactIOManager
from chaffee_assets.defs.resources import (
    ArchiveResource,
    DownloaderResource,
    ModelServiceResource,
    PassageResource,
    SpeechOptionsResource,
)
from chaffee_assets.defs.sensors import ChannelResource, build_new_uploads_sensor
from chaffee_assets.settings import Settings


def secret(name: str, value: str) -> dg.EnvVar:
    """A secret as a resource field: the UI shows the variable's name, never its value. The settings'
    value (from the environment, `.env` or the caller) is put in this process's environment, so it
    resolves here and in the processes started from here (the runs)."""
    os.environ[name] = value
    return dg.EnvVar(name)


def build_resources(settings: Settings, archive_url: str, service_address_file: str = "") -> dict[str, object]:
    """Every resource, configured from the settings. `archive_url`: where the archive database is
    (`instance.setup.archive_url`), DATABASE_URL travelling as an EnvVar; `service_address_file`:
    where `chaffee up` recorded the local model service's head (unused with RAY_ADDRESS)."""
    archive = secret("DATABASE_URL", archive_url) if settings.database_url else archive_url
    return {
        "artifacts": ArtifactIOManager(root=settings.artifact_url, audio_retention=settings.audio_retention),
        "archive": ArchiveResource(database_url=archive),
        "downloader": DownloaderResource(
            workdir=str(settings.state_path / "downloads"), timeout_seconds=settings.download_timeout_seconds,
            max_bytes=settings.max_download_bytes,
        ),
        "models": ModelServiceResource(address=settings.ray_address or "", address_file="" if settings.ray_address else service_address_file),
        "speech_options": SpeechOptionsResource(
            whisper_model=settings.whisper_model,
            whisper_batch_size=settings.whisper_batch_size,
            whisper_language=settings.whisper_language,
            whisper_prompt=settings.whisper_prompt,
            whisper_hotwords=settings.whisper_hotwords,
            whisper_language_check=settings.whisper_language_check,
            vad_threshold=settings.vad_threshold,
            diarization=settings.diarization_method,
            min_speakers=settings.min_speakers,
            max_speakers=settings.max_speakers,
            voices_dir=str(settings.voices_dir),
            voice_threshold=settings.voice_threshold,
            host_speaker=settings.host_speaker,
        ),
        "passages": PassageResource(
            max_seconds=settings.passage_max_seconds,
            max_tokens=settings.passage_max_tokens,
            embedding_model=settings.embedding_model,
            batch_size=settings.batch_size,
        ),
        "channel": ChannelResource(
            url=settings.channel_url, max_per_tick=settings.sensor_max_per_tick, timeout_seconds=settings.listing_timeout_seconds,
        ),
    }


def build_definitions(settings: Settings, archive_url: str, service_address_file: str = "") -> dg.Definitions:
    freshness = channel_freshness(settings.channel_quiet_days)
    return dg.Definitions(
        assets=all_assets(settings.embedding_model),
        asset_checks=freshness,
        sensors=[build_new_uploads_sensor(settings.sensor_interval_seconds), freshness_sensor(freshness)],
        resources=build_resources(settings, archive_url, service_address_file),
        executor=dg.in_process_executor,
    )
