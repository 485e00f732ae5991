"""Dagster resources: configuration plus the models, built once per process and shared by every
step that runs in it (the in-process executor runs a whole video's chain in one process; `chaffee
ingest` runs many videos in one process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import PrivateAttr

from chaffee_assets.lib import clock, db
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


def _cpu_threads(device: str, threads: int, share: bool) -> None:
    """On CPU: torch's threads fixed at `threads`, or, with `share`, following the share of the cores
    among the models computing on this machine now (`lib.threads.CoreShare`)."""
    from chaffee_assets.lib import threads as lib_threads
    from chaffee_assets.lib.device import resolve_device

    if resolve_device(device)[0] != "cpu":
        return
    if share:
        lib_threads.share_cores()
    elif threads > 0:
        lib_threads.limit_torch_threads(threads)


def _cache_dir(path: str | None) -> Path | None:
    return Path(path) if path else None


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
    model_cache_dir: str | None = None
    cpu_threads: int = 0  # CTranslate2 threads on CPU, fixed at load (see lib/threads.py); 0: its default
    share_cores: bool = False  # count its calls in the cores' share, so torch models make room
    _transcriber: Any = PrivateAttr(default=None)
    _load_seconds: float = PrivateAttr(default=0.0)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from chaffee_assets.lib.asr import AsrOptions, Transcriber
        from chaffee_assets.lib.device import resolve_device

        device, compute_type = resolve_device(self.device)
        _cpu_threads(device, 0, self.share_cores)
        options = AsrOptions(
            model=self.model, device=device, compute_type=compute_type, batch_size=self.batch_size, language=self.language,
            cpu_threads=self.cpu_threads if device == "cpu" else 0,
        )
        self._transcriber, self._load_seconds = cached_model(
            "whisper", (options,), lambda: Transcriber(options, cache_dir=_cache_dir(self.model_cache_dir))
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
    model_cache_dir: str | None = None
    cpu_threads: int = 0  # torch threads on CPU (see lib/threads.py); 0: torch's default
    share_cores: bool = False  # torch threads follow the cores' share instead (lib/threads.py)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _cpu_threads(self.device, self.cpu_threads, self.share_cores)
        self.embedder()  # loaded with the run, not while a step holds a `gpu` slot

    def _device(self) -> str:
        from chaffee_assets.lib.device import resolve_device

        return resolve_device(self.device)[0]

    def embedder(self):
        from chaffee_assets.lib.speaker_embed import EcapaEmbedder

        device = self._device()
        model, _ = cached_model("ecapa", (device,), lambda: EcapaEmbedder(device, cache_dir=_cache_dir(self.model_cache_dir)))
        return model

    def diarizer(self):
        from chaffee_assets.lib.diarize import DiarizationOptions, Diarizer

        options = DiarizationOptions(method=self.diarization, pyannote_model=self.pyannote_model, device=self._device())
        # no model of its own (pyannote is built on first use, recorded as a load then)
        embedder = self.embedder()
        diarizer, _ = cached_model("diarizer", (options,), lambda: Diarizer(options, embedder), is_load=False)
        return diarizer

    def namer(self, log: Callable[[str], None] | None = None):
        from chaffee_assets.lib.labels import SpeakerNamer
        from chaffee_assets.lib.voices import load_profiles

        embedder = self.embedder()
        profiles = load_profiles(Path(self.voices_dir), embedder.model_id)
        return SpeakerNamer(embedder, profiles, threshold=self.voice_threshold, host=self.host_speaker)


class EmbedderResource(dg.ConfigurableResource):
    model: str = "minilm"
    device: str = "auto"
    batch_size: int = 256
    model_cache_dir: str | None = None
    cpu_threads: int = 0  # torch threads on CPU (see lib/threads.py); 0: torch's default
    share_cores: bool = False  # torch threads follow the cores' share instead (lib/threads.py)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        _cpu_threads(self.device, self.cpu_threads, self.share_cores)
        self.embedder()  # loaded with the run, not while the step holds a `gpu` slot

    def embedder(self):
        from chaffee_assets.lib.device import resolve_device
        from chaffee_assets.lib.embed import TextEmbedder

        device = resolve_device(self.device)[0]
        model, _ = cached_model(
            "text_embedder",
            (self.model, device, self.batch_size),
            lambda: TextEmbedder(self.model, device=device, batch_size=self.batch_size, cache_dir=_cache_dir(self.model_cache_dir)),
        )
        return model


class PassageResource(dg.ConfigurableResource):
    max_seconds: float = 45.0
    max_tokens: int = 200
    embedding_model: str = "minilm"
    model_cache_dir: str | None = None

    def token_counter(self):
        """The embedding model's tokenizer alone (no weights): passages never outgrow the model's input."""
        from chaffee_assets.lib.embed import TokenCounter

        counter, _ = cached_model(
            "tokenizer", (self.embedding_model,), lambda: TokenCounter(self.embedding_model, _cache_dir(self.model_cache_dir))
        )
        return counter
