"""Speaker embeddings: speechbrain's ECAPA-TDNN (spkrec-ecapa-voxceleb, 192-d), loaded once."""

from __future__ import annotations

import logging
import time

import numpy as np

from chaffee_assets.lib import clock
from chaffee_assets.lib.models import threads
from chaffee_assets.lib.models.registry import ecapa_dir
from chaffee_assets.lib.models.runtime import ModelRuntime
from chaffee_assets.lib.types import SAMPLE_RATE
from chaffee_assets.lib.vectors import normalize

log = logging.getLogger(__name__)

ECAPA_MODEL_ID = "speechbrain/spkrec-ecapa-voxceleb"
EMBEDDING_DIM = 192
MIN_CHUNK_SECONDS = 0.5  # shorter chunks are tiled up to this length (ECAPA needs some frames)


class EcapaEmbedder:
    """`embed(chunks)` → one L2-normalised 192-d row per 16 kHz waveform chunk."""

    def __init__(self, runtime: ModelRuntime, batch_size: int = 16):
        from speechbrain.inference.speaker import EncoderClassifier

        self.runtime = runtime
        self.device = runtime.device
        self.batch_size = runtime.batch("ecapa", batch_size)
        self.path = ecapa_dir(runtime.cache_dir)
        started = time.perf_counter()
        self._model = EncoderClassifier.from_hparams(
            source=str(self.path), savedir=str(self.path), run_opts={"device": self.device}
        )
        self._model.eval()
        log.info("loaded ECAPA-TDNN from %s on %s in %.1f s", self.path, self.device, time.perf_counter() - started)

    @property
    def model_id(self) -> str:
        return ECAPA_MODEL_ID

    @property
    def dim(self) -> int:
        return EMBEDDING_DIM

    def embed(self, waveform_chunks: list[np.ndarray]) -> np.ndarray:
        """(n, 192) float32, L2-normalised; chunks of similar length are batched together.
        Recorded as `ecapa` time in the current step clock (`lib.clock`)."""
        with clock.model_call("ecapa"):
            return self._embed(waveform_chunks)

    def _embed(self, waveform_chunks: list[np.ndarray]) -> np.ndarray:
        import torch

        if not waveform_chunks:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        min_len = int(MIN_CHUNK_SECONDS * SAMPLE_RATE)
        chunks = []
        for i, c in enumerate(waveform_chunks):
            c = np.asarray(c, dtype=np.float32).reshape(-1)
            if c.size == 0:
                raise ValueError(f"speaker embedding: chunk {i} is empty")
            chunks.append(np.resize(c, min_len) if c.size < min_len else c)
        order = np.argsort([c.size for c in chunks], kind="stable")
        out = np.zeros((len(chunks), EMBEDDING_DIM), dtype=np.float32)
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                threads.rebalance()
                idx = order[b : b + self.batch_size]
                longest = max(chunks[i].size for i in idx)
                batch = np.zeros((len(idx), longest), dtype=np.float32)
                for row, i in enumerate(idx):
                    batch[row, : chunks[i].size] = chunks[i]
                lens = torch.tensor([chunks[i].size / longest for i in idx], dtype=torch.float32)
                emb = self._model.encode_batch(torch.from_numpy(batch).to(self.device), lens.to(self.device))
                out[idx] = emb.squeeze(1).float().cpu().numpy()
        return normalize(out)
