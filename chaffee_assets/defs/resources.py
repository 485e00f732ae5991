"""Dagster resources: configuration plus the models, built once per process and shared by every
step that runs in it (the in-process executor runs a whole video's chain in one process; `chaffee
ingest` runs many videos in one process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import PrivateAttr

from chaffee_assets.archive import db
from chaffee_assets.lib import clock
from chaffee_assets.lib.artifacts import ArtifactStore

T = TypeVar("T")

_MODELS: dict[tuple, Any] = {}
_LOCK = threading.RLock()  # re-entrant: a model may be built from another cached one
MODEL_LOADS: dict[str, int] = {}  # kind -> loads in this process (benchmarks read it)


def cached_model(kind: str, key: tuple, build: Callable[[], T], is_load: bool = True) -> tuple[T, float]:
    """The model for `key`, built at most once per process; returns (model, seconds spent loading).

    Each load is recorded (`lib.clock`): the step's metadata shows what it loaded and for how long.
    `is_load=False` caches an object that loads nothing itself (it is neither counted nor recorded)."""
    with _LOCK:
        full = (kind, *key)
        if full in _MODELS:
            return _MODELS[full], 0.0
        started = time.time()
        t0 = time.perf_counter()
        model = build()
        seconds = time.perf_counter() - t0
        _MODELS[full] = model
        if is_load:
            MODEL_LOADS[kind] = MODEL_LOADS.get(kind, 0) + 1
            clock.record_load(kind, started, started + seconds)
        return model, seconds


@cache
def model_runtime(device: str, cache_dir: str, threads: int = 0):
    """The runtime of a resource's models (`lib.models.runtime`), resolved once per process."""
    from chaffee_assets.lib.models.runtime import ModelRuntime

    return ModelRuntime.resolve(device, cache_dir, threads)


def _cpu_threads(runtime, share: bool) -> None:
    """On CPU: torch's threads fixed at the runtime's, or, with `share`, following the share of the
    cores among the models computing on this machine now (`lib.models.threads.CoreShare`)."""
    from chaffee_assets.lib.models import threads as lib_threads

    if runtime.on_cuda:
        return
    if share:
        lib_threads.share_cores()
    elif runtime.threads > 0:
        lib_threads.limit_torch_threads(runtime.threads)


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


class ArtifactStoreResource(dg.ConfigurableResource):
    root: str

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)


class DownloaderResource(dg.ConfigurableResource):
    workdir: str
    retries: int = 3
    backoff_seconds: float = 2.0


class AsrResource(dg.ConfigurableResource):
    model: str = "tiny.en"
    device: str = "auto"
    batch_size: int = 8
    language: str | None = None
    model_cache_dir: str
    cpu_threads: int = 0  # CTranslate2 threads on CPU, fixed at load (see lib/models/threads.py); 0: its default
    share_cores: bool = False  # count its calls in the cores' share, so torch models make room
    _transcriber: Any = PrivateAttr(default=None)
    _load_seconds: float = PrivateAttr(default=0.0)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from chaffee_assets.lib.models.asr import AsrOptions, Transcriber

        runtime = model_runtime(self.device, self.model_cache_dir, self.cpu_threads)
        _cpu_threads(model_runtime(self.device, self.model_cache_dir), self.share_cores)
        options = AsrOptions(model=self.model, batch_size=self.batch_size, language=self.language)
        self._transcriber, self._load_seconds = cached_model(
            "whisper", (options, runtime), lambda: Transcriber(options, runtime)
        )

    @property
    def transcriber(self):
        return self._transcriber


class SpeakerModelsResource(dg.ConfigurableResource):
    """ECAPA-TDNN speaker embeddings, diarization (monologue check, simple, pyannote) and voice naming."""

    device: str = "auto"
    diarization: str = "auto"
    pyannote_model: str | None = None
    voices_dir: str = "voices"
    voice_threshold: float = 0.5
    host_speaker: str = "Chaffee"
    model_cache_dir: str
    cpu_threads: int = 0  # torch threads on CPU (see lib/models/threads.py); 0: torch's default
    share_cores: bool = False  # torch threads follow the cores' share instead (lib/models/threads.py)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _cpu_threads(self._runtime(), self.share_cores)
        self.embedder()  # loaded with the run, not while a step holds a `gpu` slot

    def _runtime(self):
        return model_runtime(self.device, self.model_cache_dir, self.cpu_threads)

    def embedder(self):
        from chaffee_assets.lib.models.ecapa import EcapaEmbedder

        runtime = self._runtime()
        model, _ = cached_model("ecapa", (runtime,), lambda: EcapaEmbedder(runtime))
        return model

    def diarizer(self):
        from chaffee_assets.lib.models.diarize import DiarizationOptions, Diarizer

        options = DiarizationOptions(method=self.diarization, pyannote_model=self.pyannote_model)
        # no model of its own (pyannote is built on first use, recorded as a load then)
        embedder = self.embedder()
        diarizer, _ = cached_model("diarizer", (options,), lambda: Diarizer(options, embedder), is_load=False)
        return diarizer

    def namer(self, log: Callable[[str], None] | None = None):
        from chaffee_assets.lib.speakers import SpeakerNamer
        from chaffee_assets.lib.voices import load_profiles

        embedder = self.embedder()
        profiles = load_profiles(Path(self.voices_dir), embedder.model_id)
        return SpeakerNamer(embedder, profiles, threshold=self.voice_threshold, host=self.host_speaker)


class EmbedderResource(dg.ConfigurableResource):
    model: str = "minilm"
    device: str = "auto"
    batch_size: int = 256
    model_cache_dir: str
    cpu_threads: int = 0  # torch threads on CPU (see lib/models/threads.py); 0: torch's default
    share_cores: bool = False  # torch threads follow the cores' share instead (lib/models/threads.py)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _cpu_threads(model_runtime(self.device, self.model_cache_dir, self.cpu_threads), self.share_cores)
        self.embedder()  # loaded with the run, not while the step holds a `gpu` slot

    def embedder(self):
        from chaffee_assets.lib.models.text_embed import TextEmbedder

        runtime = model_runtime(self.device, self.model_cache_dir, self.cpu_threads)
        model, _ = cached_model(
            "text_embedder", (self.model, runtime, self.batch_size), lambda: TextEmbedder(self.model, runtime, self.batch_size)
        )
        return model


class PassageResource(dg.ConfigurableResource):
    max_seconds: float = 45.0
    max_tokens: int = 200
    embedding_model: str = "minilm"
    model_cache_dir: str

    def token_counter(self):
        """The embedding model's tokenizer alone (no weights): passages never outgrow the model's input."""
        from chaffee_assets.lib.models.text_embed import TokenCounter

        counter, _ = cached_model(
            "tokenizer", (self.embedding_model,), lambda: TokenCounter(self.embedding_model, Path(self.model_cache_dir))
        )
        return counter
