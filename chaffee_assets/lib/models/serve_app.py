"""The model service on Ray Serve: `SpeechModels` in a deployment, one replica per accelerator (on a
CPU machine one replica that owns the cores), batching across callers where it pays.

- The text embedder batches the passages of every video in flight (`@serve.batch`, counted in
  passages): two runs' embedding steps arriving together share one forward pass of BATCH_SIZE.
- ECAPA windows (the monologue check, naming) are batched the same way across the videos whose
  diarization or naming runs at the same moment.
- Requests run on a thread pool of their own; batches on one thread per model, so a request waiting
  for its batch never takes the thread the batch needs.
- Queues: `max_ongoing_requests` per replica, `max_queued_requests` per caller (Ray Serve's own
  meaning: a caller whose queue is full gets `BackPressureError`, which the client reports as busy).
  The `gpu` pool of the runs bounds the model work in flight across all of them.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from ray import serve

from chaffee_assets.lib.models.service import ServiceConfig, SpeechModels, TextModel
from chaffee_assets.lib.types import (
    AsrOptions,
    AudioRef,
    Diarization,
    DiarizationOptions,
    Region,
    ReplicaInfo,
    Served,
    Transcript,
    Turn,
)

APP_NAME = "chaffee"
DEPLOYMENT = "SpeechModels"
MAX_ONGOING_REQUESTS = 64
MAX_QUEUED_REQUESTS = 256
REQUEST_THREADS = 32
BATCH_WAIT_S = 0.05  # a batch waits this long for other callers once its first item arrived


def _total_items(items: list[Any]) -> int:
    return sum(len(x[-1]) for x in items)


class ServedSpeechModels:
    def __init__(self, config: ServiceConfig):
        self.models = SpeechModels(config)
        self._requests = ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="request")
        self._ecapa_thread = ThreadPoolExecutor(1, thread_name_prefix="ecapa-batch")
        self._text_thread = ThreadPoolExecutor(1, thread_name_prefix="text-batch")
        self._batch_ids = itertools.count(1)
        self._text_batch.set_max_batch_size(config.text_batch_size)
        self._ecapa_batch.set_max_batch_size(config.ecapa_batch_size)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._requests, functools.partial(fn, *args))

    def _batched_ecapa(self, loop: asyncio.AbstractEventLoop):
        """ECAPA for a request's thread, through the replica's batch queue on its event loop."""
        limit = self.models.config.ecapa_batch_size

        def embed(chunks: list[np.ndarray]) -> np.ndarray:
            parts = [chunks[i : i + limit] for i in range(0, len(chunks), limit)] or [[]]
            futures = [asyncio.run_coroutine_threadsafe(self._ecapa_batch(("ecapa", p)), loop) for p in parts]
            return np.concatenate([f.result() for f in futures])

        return embed

    # -- batches -----------------------------------------------------------------------------------
    @serve.batch(max_batch_size=64, batch_wait_timeout_s=BATCH_WAIT_S, batch_size_fn=_total_items)
    async def _ecapa_batch(self, items: list[tuple[str, list[np.ndarray]]]) -> list[np.ndarray]:
        flat = [c for _, chunks in items for c in chunks]
        loop = asyncio.get_running_loop()
        if not flat:
            return [np.zeros((0, 192), dtype=np.float32) for _ in items]
        vectors = await loop.run_in_executor(self._ecapa_thread, self.models.ecapa().embed, flat)
        return _split(vectors, [len(chunks) for _, chunks in items])

    @serve.batch(max_batch_size=256, batch_wait_timeout_s=BATCH_WAIT_S, batch_size_fn=_total_items)
    async def _text_batch(self, items: list[tuple[str, list[str]]]) -> list[tuple[np.ndarray, dict, dict]]:
        """One forward pass per model over every caller's passages; each caller gets its rows back,
        the seconds, and which batch it was in (id, callers, passages)."""
        loop = asyncio.get_running_loop()
        out: list[Any] = [None] * len(items)
        for model in sorted({m for m, _ in items}):
            mine = [i for i, (m, _) in enumerate(items) if m == model]
            texts = [t for i in mine for t in items[i][1]]
            served = await loop.run_in_executor(self._text_thread, self.models.embed_texts, texts, model)
            batch = {"id": next(self._batch_ids), "callers": len(mine), "items": len(texts)}
            for i, rows in zip(mine, _split(served.value, [len(items[i][1]) for i in mine]), strict=True):
                out[i] = (rows, served.seconds_by_model, batch)
        return out

    # -- requests ----------------------------------------------------------------------------------
    async def speech_regions(self, audio_url: str, video_id: str, threshold: float | None = None) -> Served[tuple[Region, ...]]:
        args = (audio_url, video_id) if threshold is None else (audio_url, video_id, threshold)  # None: the service's default
        return await self._run(self.models.speech_regions, *args)

    async def transcribe(self, audio: AudioRef, options: AsrOptions) -> Served[Transcript]:
        return await self._run(self.models.transcribe, audio, options)

    async def diarize(self, audio: AudioRef, options: DiarizationOptions) -> Served[Diarization]:
        embed = self._batched_ecapa(asyncio.get_running_loop())
        return await self._run(self.models.diarize, audio, options, embed)

    async def cluster_embeddings(self, audio: AudioRef, turns: Sequence[Turn]) -> Served[dict[str, np.ndarray]]:
        embed = self._batched_ecapa(asyncio.get_running_loop())
        return await self._run(self.models.cluster_embeddings, audio, turns, embed)

    async def clip_embedding(self, url: str) -> Served[np.ndarray | None]:
        embed = self._batched_ecapa(asyncio.get_running_loop())
        return await self._run(self.models.clip_embedding, url, embed)

    async def embed_texts(self, texts: Sequence[str], model: str) -> Served[np.ndarray]:
        limit = self.models.config.text_batch_size
        parts = [list(texts[i : i + limit]) for i in range(0, len(texts), limit)]
        if not parts:
            dim = (await self._run(self.models.text_model, model)).dim
            return Served(np.zeros((0, dim), dtype=np.float32), {}, self.models.replica_id)
        answers = await asyncio.gather(*(self._text_batch((model, p)) for p in parts))
        seconds: dict[str, float] = {}
        for _, s, _ in answers:
            for k, v in s.items():
                seconds[k] = round(seconds.get(k, 0.0) + v, 3)
        batches = [b for _, _, b in answers]
        return Served(
            np.concatenate([rows for rows, _, _ in answers]), seconds, self.models.replica_id,
            batch={"ids": [b["id"] for b in batches], "callers": max(b["callers"] for b in batches),
                   "items": sum(b["items"] for b in batches)},
        )

    async def text_model(self, model: str) -> TextModel:
        return await self._run(self.models.text_model, model)

    async def count_tokens(self, texts: Sequence[str], model: str) -> list[int]:
        return await self._run(self.models.count_tokens, texts, model)

    async def info(self) -> ReplicaInfo:
        return self.models.info()


def _split(rows: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *sizes])
    return [rows[a:b] for a, b in itertools.pairwise(bounds)]


# The replica's process environment. glibc gives each thread that allocates an arena of its own and
# keeps what it frees there: a replica's request threads (whisper, ECAPA and the text embedder at
# once) held ~400 MB more at their peak than with two arenas, for the same time (4 talks served at
# once, the packaged models: peak RSS 2.71 GB vs 2.31 GB, 100 s vs 96 s).
REPLICA_ENV = {"MALLOC_ARENA_MAX": "2"}


def build_app(config: ServiceConfig, replicas: int = 1, gpus_per_replica: float = 0.0,
              cpus_per_replica: float = 0.0, resources: dict[str, float] | None = None):
    """The Serve application: `replicas` copies of every model, each on its accelerator."""
    actor: dict[str, Any] = {"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica,
                             "runtime_env": {"env_vars": dict(REPLICA_ENV)}}
    if resources:
        actor["resources"] = dict(resources)
    deployment = serve.deployment(
        ServedSpeechModels, name=DEPLOYMENT, num_replicas=replicas, max_ongoing_requests=MAX_ONGOING_REQUESTS,
        max_queued_requests=MAX_QUEUED_REQUESTS, ray_actor_options=actor, health_check_period_s=10,
        graceful_shutdown_timeout_s=60,
    )
    return deployment.bind(config)
