"""Passage vectors: one sentence-transformers model, loaded once, batched across videos.

`TextEmbedder.embed_videos` puts every passage of every video through the model in batches of
`batch_size` regardless of which video a passage belongs to (sorted by length so a batch holds
similar lengths and pads little), then splits the vectors back per video. Vectors are float32 and
L2-normalised (renormalised in float32 after an fp16 forward pass on CUDA).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from chaffee_assets.lib.errors import ChaffeeError, ModelNotFound, VideoError
from chaffee_assets.lib.models import registry
from chaffee_assets.lib.models.runtime import ModelRuntime
from chaffee_assets.lib.types import EmbedStats, Passages, PassageVectors
from chaffee_assets.lib.vectors import normalize

log = logging.getLogger(__name__)


def _max_seq_length(path: Path, fallback: int) -> int:
    cfg = path / "sentence_bert_config.json"
    if cfg.exists():
        value = json.loads(cfg.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return fallback


class TokenCounter:
    """The embedding model's tokenizer alone (no weights): what the `segments` step needs.

    `count_tokens(text)` excludes special tokens; `max_tokens` is how many content tokens fit in one
    model input (the model's max sequence length minus its special tokens).
    """

    def __init__(self, model: str, cache_dir: Path):
        path = registry.resolve_embedding(model, cache_dir)
        self.model_id = registry.embedding_model_id(model)
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.max_tokens = _content_tokens(self._tokenizer, _max_seq_length(path, self._tokenizer.model_max_length))

    def count_tokens(self, text: str) -> int:
        return _count(self._tokenizer, text)


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _content_tokens(tokenizer, max_seq_length: int) -> int:
    specials = len(tokenizer("", add_special_tokens=True)["input_ids"])
    return max(1, int(max_seq_length) - specials)


class TextEmbedder:
    """A sentence-transformers model loaded once; `model` is a packaged alias or a local folder."""

    def __init__(self, model: str, runtime: ModelRuntime, batch_size: int = 256):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        path = registry.resolve_embedding(model, runtime.cache_dir)  # ModelNotFound before any heavy import
        self.model_id = registry.embedding_model_id(model)
        self.name = model
        self.path = path
        self.runtime = runtime
        self.device = runtime.device
        self.batch_size = runtime.batch("text", batch_size)
        self.last_stats: EmbedStats | None = None

        t0 = time.perf_counter()
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(path), device=self.device)
        if self.device.startswith("cuda"):
            self._model.half()
        self._model.eval()
        dim = self._model.get_embedding_dimension()
        if not dim:
            raise ModelNotFound(f"embedding model {model!r} at {path} does not report its dimension")
        self.dim = int(dim)
        self.max_tokens = _content_tokens(self._model.tokenizer, self._model.max_seq_length)
        log.info(
            "loaded embedding model %s (%s, dim %d, %d tokens) on %s in %.1f s",
            self.model_id, path, self.dim, self.max_tokens, self.device, time.perf_counter() - t0,
        )

    def count_tokens(self, text: str) -> int:
        return _count(self._model.tokenizer, text)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, normalised; batches of `batch_size` in length order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            log.info("Generating embeddings for %d segments", len(idx))
            out[idx] = self._encode([texts[i] for i in idx])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        """One (dim,) vector; text longer than the model's input is truncated by the tokenizer."""
        return self._encode([text])[0]

    def embed_videos(self, passages_by_video: Mapping[str, Passages]) -> dict[str, PassageVectors]:
        """Vectors for every video's passages, all videos batched together; stats in `last_stats`."""
        t0 = time.perf_counter()
        texts: list[str] = []
        spans: dict[str, tuple[int, int]] = {}
        for video_id, passages in passages_by_video.items():
            if passages.video_id != video_id:
                raise VideoError(video_id, f"passages belong to video {passages.video_id!r}")
            for i, p in enumerate(passages.passages):
                if p.ordinal != i:
                    raise VideoError(video_id, f"passage ordinals must be 0..n-1, found {p.ordinal} at {i}")
            spans[video_id] = (len(texts), len(texts) + len(passages.passages))
            texts.extend(p.text for p in passages.passages)
        vectors = self.embed_texts(texts)
        result = {
            vid: PassageVectors(video_id=vid, model=self.model_id, vectors=vectors[a:b].copy())
            for vid, (a, b) in spans.items()
        }
        seconds = time.perf_counter() - t0
        batches = -(-len(texts) // self.batch_size)
        self.last_stats = EmbedStats(len(spans), len(texts), batches, self.batch_size, seconds)
        log.info(
            "embedded %d passages of %d videos in %d batches of <= %d with %s: %.1f s (%.1f passages/s)",
            len(texts), len(spans), batches, self.batch_size, self.model_id, seconds, self.last_stats.passages_per_s,
        )
        return result

    def _encode(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        vecs = np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        if not np.all(np.isfinite(vecs)) or np.any(norms == 0):
            raise ChaffeeError(f"embedding model {self.model_id} produced a zero or non-finite vector")
        return normalize(vecs)
