"""The model service's work: every model of the pipeline resident in one process, answering the
runs' requests. Ray Serve hosts it (`serve_app.py`: one replica per accelerator, batching across
callers); a notebook, a benchmark or the GPU check can use it directly.

Requests carry references, never waveforms: an `AudioRef` names the waveform in the artifact store
(a path or any fsspec URL) and the service reads it there. Answers are the project's contracts
wrapped in `Served`, with the seconds each model computed for that request, so a run's metadata
still says where the time went. Each model is built once (a cached factory per model and option):
whisper, silero VAD, ECAPA, pyannote, the text embedder; after the warm-up no request loads one
unless it asks for a model nobody asked for before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from chaffee_assets.lib import clock
from chaffee_assets.lib.artifacts import read_waveform
from chaffee_assets.lib.models import faster_whisper_compat, threads, vad
from chaffee_assets.lib.models.runtime import ModelRuntime
from chaffee_assets.lib.types import (
    AsrOptions,
    Audio,
    AudioRef,
    Diarization,
    DiarizationOptions,
    Region,
    ReplicaInfo,
    Served,
    Transcript,
    Turn,
    VideoMeta,
)

log = logging.getLogger(__name__)

# A VAD pass holds its waveform and faster-whisper's padded copy of it at its peak (upstream's silero
# call framed a third copy, which `faster_whisper_compat` removes: 85 minutes of audio are 311 MB as
# float32), and it computes on one thread. Passes at once: half the cores, at least one. Four
# 85-minute talks arriving together do not hold four passes' worth of memory in the replica.
VAD_PASSES_PER_CORE = 0.5

EmbedFn = Callable[[list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class ServiceConfig:
    """How the service's models run: resolved from the settings by whoever deploys it."""

    device: str = "auto"  # auto | cpu | cuda (per replica: Ray gives each replica its GPU)
    model_cache: str = "~/.cache/chaffee_assets/models"
    threads: int = 0  # CPU cores this replica's models share; 0: every core of the machine
    whisper_workers: int = 2  # transcriptions at once (the `gpu` pool's limit, ASR_WORKERS)
    text_batch_size: int = 256  # passages per text-embedder batch (BATCH_SIZE)
    ecapa_batch_size: int = 64  # ECAPA windows per batch, across callers
    pyannote_model: str | None = None  # a local pyannote pipeline folder; None: packaged models
    # loaded at start: "whisper:<model>", "language:<model>" (loaded only beside an English-only whisper of this list),
    # "text:<model>", "ecapa", "vad", "segmentation", "pyannote"
    warm: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextModel:
    """What a run needs to know of a text embedder (passages must fit its input)."""

    model_id: str
    dim: int
    max_tokens: int


class SpeechModels:
    def __init__(self, config: ServiceConfig):
        self.config = config
        self.patches = faster_whisper_compat.apply()  # VAD passes without a framed copy of the audio
        self.cores = config.threads or threads.available_cores()
        self.runtime = ModelRuntime.resolve(config.device, config.model_cache, self.cores)
        if not self.runtime.on_cuda:  # torch's threads follow the calls computing in this process
            threads.share_cores(self.cores)
        self._models: dict[tuple, Any] = {}
        self._build_lock = threading.RLock()  # a model may be built from another (pyannote from ECAPA's folder)
        self._count_lock = threading.Lock()
        self._vad_passes = threading.BoundedSemaphore(max(1, int(self.cores * VAD_PASSES_PER_CORE)))
        self.requests_served = 0
        self.in_flight = 0
        self.loads: dict[str, float] = {}  # model -> seconds its load took
        self.started_at = time.time()
        for item in sorted(config.warm, key=lambda i: not i.startswith("whisper:")):  # whisper first: "language" asks about it
            self.warm(item)

    # -- models, each built once ----------------------------------------------------------------
    def _cached(self, key: tuple, build: Callable[[], Any]) -> Any:
        with self._build_lock:
            if key not in self._models:
                t0 = time.perf_counter()
                self._models[key] = build()
                name = ":".join(str(k) for k in key if k)
                self.loads[name] = round(time.perf_counter() - t0, 3)
                log.info("model service: loaded %s in %.1f s", name, self.loads[name])
            return self._models[key]

    def whisper(self, model: str):
        from chaffee_assets.lib.models.asr import Transcriber

        workers = max(1, self.config.whisper_workers)
        runtime = ModelRuntime(self.runtime.device, self.runtime.compute_type, self.runtime.cache_dir,
                               max(1, self.cores // workers) if not self.runtime.on_cuda else 0)
        return self._cached(("whisper", model), lambda: Transcriber(AsrOptions(model=model), runtime, workers))

    def language_check(self, model: str):
        """The multilingual model that checks an English-only model's windows (detection only)."""
        from chaffee_assets.lib.models.asr import LanguageCheck

        runtime = ModelRuntime(self.runtime.device, self.runtime.compute_type, self.runtime.cache_dir,
                               self.cores if not self.runtime.on_cuda else 0)
        return self._cached(("language-check", model), lambda: LanguageCheck(model, runtime))

    def ecapa(self):
        from chaffee_assets.lib.models.ecapa import EcapaEmbedder

        return self._cached(("ecapa",), lambda: EcapaEmbedder(self.runtime))

    def text(self, model: str):
        from chaffee_assets.lib.models.text_embed import TextEmbedder

        return self._cached(("text", model), lambda: TextEmbedder(model, self.runtime, self.config.text_batch_size))

    def diarizer(self, options: DiarizationOptions):
        from dataclasses import replace

        from chaffee_assets.lib.models.diarize import Diarizer

        options = replace(options, pyannote_model=options.pyannote_model or self.config.pyannote_model)
        ecapa = self.ecapa()
        # a Diarizer holds no model until pyannote is needed: not a load of its own; the check's
        # segmentation model is the service's, one for every Diarizer
        with self._build_lock:
            return self._models.setdefault(("diarizer", options), Diarizer(options, ecapa, self.segmentation))

    def segmentation(self):
        """segmentation-3.0 alone: the monologue check's overlapped-speech detector."""
        from chaffee_assets.lib.models.diarize import load_segmentation_model

        return self._cached(("segmentation",), lambda: load_segmentation_model(self.runtime.device))

    def warm(self, item: str) -> None:
        kind, _, model = item.partition(":")
        if kind == "whisper":
            self.whisper(model)
        elif kind == "text":
            self.text(model)
        elif kind == "language":  # needed beside an English-only whisper only (known once it is loaded)
            if any(key[0] == "whisper" and not m.multilingual for key, m in self._models.items()):
                self.language_check(model)
        elif kind == "ecapa":
            self.ecapa()
        elif kind == "segmentation":
            self.segmentation()
        elif kind == "vad":
            self._cached(("silero-vad",), _silero)
        elif kind == "pyannote":
            d = self.diarizer(DiarizationOptions(method="pyannote"))
            self._cached(("pyannote",), d.load_pyannote)
        else:
            raise ValueError(f"unknown model to warm: {item!r}")

    # -- requests ---------------------------------------------------------------------------------
    @contextmanager
    def _request(self) -> Iterator[clock.StepClock]:
        with self._count_lock:
            self.in_flight += 1
        try:
            with clock.step_clock() as c:
                yield c
        finally:
            with self._count_lock:
                self.in_flight -= 1
                self.requests_served += 1

    def _served(self, value: Any, c: clock.StepClock, **extra: Any) -> Served:
        seconds = {m: round(s, 3) for m, s in c.seconds_by_model().items()}
        return Served(value, seconds, self.replica_id, **extra)

    @property
    def replica_id(self) -> str:
        return f"{os.uname().nodename}:{os.getpid()}"

    def speech_regions(self, audio_url: str, video_id: str, threshold: float = vad.THRESHOLD) -> Served[tuple[Region, ...]]:
        """Silero VAD over the stored waveform: the video's speech, found once for all its steps."""
        with self._request() as c, self._vad_passes:  # the waveform is read once the pass may begin
            wav = read_waveform(audio_url)
            with clock.model_call("silero-vad"):
                regions = tuple(vad.speech_regions(wav, threshold=threshold, max_region_s=30.0))
            log.info("video %s: %d speech regions, %.0f s of %.0f s", video_id, len(regions),
                     vad.speech_seconds(list(regions)), len(wav) / 16_000)
            return self._served(regions, c)

    def transcribe(self, audio: AudioRef, options: AsrOptions) -> Served[Transcript]:
        with self._request() as c:
            transcriber, wav = self.whisper(options.model), _load(audio)
            check = None
            if options.language_check and not transcriber.multilingual:
                check = _timed("language-check", self.language_check(options.language_check))
            with clock.model_call("whisper"):  # the language check inside it is counted as its own
                result = transcriber.transcribe(wav, audio.speech, options, check)
            return self._served(result, c)

    def diarize(self, audio: AudioRef, options: DiarizationOptions, embed: EmbedFn | None = None) -> Served[Diarization]:
        with self._request() as c:
            diarizer = self.diarizer(options)
            result = diarizer.diarize(_load(audio), audio.speech, _timed("ecapa", embed or self.ecapa().embed))
            return self._served(result, c)

    def cluster_embeddings(self, audio: AudioRef, turns: Sequence[Turn], embed: EmbedFn | None = None) -> Served[dict[str, np.ndarray]]:
        """cluster -> ECAPA embeddings of its longest turns: what naming compares with the voices."""
        from chaffee_assets.lib.speakers import cluster_embeddings

        with self._request() as c:
            out = cluster_embeddings(read_waveform(audio.url), turns, _timed("ecapa", embed or self.ecapa().embed))
            return self._served(out, c)

    def clip_embedding(self, url: str, embed: EmbedFn | None = None) -> Served[np.ndarray | None]:
        """One unit vector for an enrolment clip (its speech, in windows, averaged); None: no speech."""
        from chaffee_assets.lib.voices import clip_embedding

        with self._request() as c:
            ecapa = self.ecapa()
            caller = _Embedder(ecapa.model_id, _timed("ecapa", embed or ecapa.embed))
            return self._served(clip_embedding(read_waveform(url), caller), c)

    def embed_texts(self, texts: Sequence[str], model: str) -> Served[np.ndarray]:
        with self._request() as c:
            embedder = self.text(model)
            with clock.model_call("text_embedder"):
                vectors = embedder.embed_texts(list(texts))
            return self._served(vectors, c)

    def text_model(self, model: str) -> TextModel:
        e = self.text(model)
        return TextModel(e.model_id, e.dim, e.max_tokens)

    def count_tokens(self, texts: Sequence[str], model: str) -> list[int]:
        e = self.text(model)
        return [e.count_tokens(t) for t in texts]

    def info(self) -> ReplicaInfo:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return ReplicaInfo(
            replica=self.replica_id, node_id=_node_id(), device=self.runtime.device,
            models_loaded=tuple(sorted(self.loads)), requests_served=self.requests_served, in_flight=self.in_flight,
            rss_bytes=_rss_bytes() or rss, gpu_memory_bytes=_gpu_memory_bytes(self.runtime),
        )


def _silero():
    from faster_whisper.vad import get_vad_model

    return get_vad_model()


def _load(audio: AudioRef) -> Audio:
    return Audio(meta=audio.meta, waveform=read_waveform(audio.url))


def _timed(model: str, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`call` (ECAPA windows, a language check's window), counted as `model` time of this request."""

    def timed(x: Any) -> Any:
        with clock.model_call(model):
            return call(x)

    return timed


class _Embedder:
    """The `Embedder` protocol of `lib.voices` over an embedding function."""

    def __init__(self, model_id: str, embed: EmbedFn):
        self.model_id = model_id
        self.embed = embed


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 - outside Ray there is no node
        return ""


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _gpu_memory_bytes(runtime: ModelRuntime) -> int:
    if not runtime.on_cuda:
        return 0
    import torch

    return int(torch.cuda.memory_allocated())


def audio_ref(video_id: str, url: str, seconds: float, speech: Sequence[Region] = ()) -> AudioRef:
    """An `AudioRef` for a waveform already stored (tests, benchmarks)."""
    return AudioRef(VideoMeta(video_id, video_id, url), url, seconds, tuple(speech))
