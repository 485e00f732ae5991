"""Dagster resources: plain fields (configuration is given at the wiring, `defs/build.py`). No model
lives in a run: the models are the model service's (`ModelServiceResource`), the run passes it
references and gets the project's contracts back."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from chaffee_assets.archive import db
from chaffee_assets.lib.types import AsrOptions, DiarizationOptions, Profile


class ArchiveResource(dg.ConfigurableResource):
    """The archive database (Postgres + pgvector) that search reads."""

    database_url: str

    @contextmanager
    def connect(self):
        conn = db.connect(self.database_url)
        try:
            yield conn
        finally:
            conn.close()


class DownloaderResource(dg.ConfigurableResource):
    workdir: str
    retries: int = 3
    backoff_seconds: float = 2.0
    timeout_seconds: float = 3600.0  # the whole download, retries included
    max_bytes: int = 3 << 30


class ModelServiceResource(dg.ConfigurableResource):
    """The model service on Ray Serve (`lib/models/serve_app.py`): RAY_ADDRESS, or the local head
    whose address `chaffee up` recorded in `address_file`. One connection per run."""

    address: str = ""
    address_file: str = ""
    unavailable_grace_seconds: float = 180.0
    _client: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from chaffee_assets.lib.models.client import ModelClient

        self._client = ModelClient(self.address, self.address_file, unavailable_grace_s=self.unavailable_grace_seconds)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()

    def call(self, method: str, *args: Any, about: str = "") -> Any:
        """The service's `method` (a `Served` answer, or a plain value for the small ones)."""
        return self._client.call(method, *args, about=about)


class SpeechOptionsResource(dg.ConfigurableResource):
    """What the speech step asks of the models, and the voices it names speakers with."""

    whisper_model: str = "tiny.en"
    whisper_batch_size: int = 8
    whisper_language: str | None = None
    whisper_prompt: str | None = None
    whisper_hotwords: str | None = None
    whisper_language_check: str | None = "base"
    vad_threshold: float = 0.5
    diarization: str = "hybrid"
    min_speakers: int | None = None
    max_speakers: int | None = None
    voices_dir: str = "voices"
    voice_threshold: float = 0.5
    host_speaker: str = "Chaffee"

    def asr_options(self) -> AsrOptions:
        return AsrOptions(model=self.whisper_model, batch_size=self.whisper_batch_size, language=self.whisper_language,
                          initial_prompt=self.whisper_prompt, hotwords=self.whisper_hotwords,
                          language_check=self.whisper_language_check)

    def diarization_options(self) -> DiarizationOptions:
        return DiarizationOptions(method=self.diarization, min_speakers=self.min_speakers, max_speakers=self.max_speakers)

    def profiles(self, model_id: str) -> list[Profile]:
        from chaffee_assets.lib.voices import load_profiles

        return load_profiles(Path(self.voices_dir), model_id)


class PassageResource(dg.ConfigurableResource):
    max_seconds: float = 45.0
    max_tokens: int = 200
    embedding_model: str = "minilm"
    batch_size: int = 256
