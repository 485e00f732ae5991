"""Who speaks when: a cheap monologue check first, pyannote only when more than one voice is heard.

Methods (`DiarizationOptions.method`):
- `off`: every speech region is one turn of `SPEAKER_00` (the old `ASSUME_MONOLOGUE=true`).
- `auto`: ECAPA embeddings of a dozen short windows spread over the speech; when every pair sounds
  like the same voice the speech regions are the turns of one speaker (the *fast path*: pyannote is
  never imported); otherwise pyannote runs.
- `pyannote`: pyannote.audio's SpeakerDiarization (packaged segmentation-3.0 + ECAPA, or a local
  pipeline folder such as community-1 via `pyannote_model`).
- `simple`: agglomerative clustering (cosine) of ECAPA embeddings of sliding windows over the speech.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chaffee_assets.lib import clock
from chaffee_assets.lib.errors import ModelNotFound
from chaffee_assets.lib.models import pyannote_compat, threads, vad
from chaffee_assets.lib.models.ecapa import EcapaEmbedder
from chaffee_assets.lib.models.registry import segmentation_dir
from chaffee_assets.lib.speakers import first_appearance
from chaffee_assets.lib.types import SAMPLE_RATE, Audio, Diarization, DiarizationOptions, Region, Turn
from chaffee_assets.lib.vectors import normalize

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[np.ndarray]], np.ndarray]  # waveform chunks -> (n, 192) unit rows

MIN_AUDIO_SECONDS = 1.0  # shorter audio: empty diarization, like the transcript
MIN_WINDOW_SECONDS = 1.0  # a monologue-check window shorter than this is not embedded
SINGLE = "SPEAKER_00"

# pyannote's parameters for the packaged segmentation-3.0 + ECAPA (MODELS.md; bench/quality.py:
# DER 5.2 % on the pyannote sample at segmentation step 0.1, 12.8 % at step 0.5).
PYANNOTE_PARAMS = {
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.7},
}




def single_speaker_turns(regions: list[Region], speaker: str = SINGLE) -> tuple[Turn, ...]:
    return tuple(Turn(float(a), float(b), speaker) for a, b in regions)


def spread_windows(regions: list[Region], n: int, window_s: float) -> list[Region]:
    """Up to `n` windows of `window_s`, evenly spread over the speech time of `regions`.

    Each window lies inside one region (centred on its share of the speech, clipped to the region);
    on short audio windows overlap by at most half; windows shorter than `MIN_WINDOW_SECONDS` (or
    repeated) are dropped.
    """
    lengths = np.array([b - a for a, b in regions], dtype=float)
    total = float(lengths.sum())
    if total <= 0 or n <= 0:
        return []
    n = max(1, min(n, int(total // (window_s / 2)) or 1))
    ends = np.cumsum(lengths)
    out: list[Region] = []
    for k in range(n):
        t = (k + 0.5) * total / n  # position on the speech-only timeline
        i = min(int(np.searchsorted(ends, t, side="right")), len(regions) - 1)
        a, b = regions[i]
        centre = a + (t - (ends[i] - lengths[i]))
        start = min(max(a, centre - window_s / 2), max(a, b - window_s))
        end = min(b, start + window_s)
        if end - start >= MIN_WINDOW_SECONDS and (start, end) not in out:
            out.append((start, end))
    return out


def _slice(wav: np.ndarray, region: Region) -> np.ndarray:
    return wav[int(region[0] * SAMPLE_RATE) : int(region[1] * SAMPLE_RATE)]


def pairwise_similarity_percentile(embeddings: np.ndarray, percentile: float) -> float | None:
    """The `percentile`-th percentile of the cosine similarities of all pairs of rows (None below 2 rows)."""
    if len(embeddings) < 2:
        return None
    sims = embeddings @ embeddings.T
    upper = sims[np.triu_indices(len(embeddings), k=1)]
    return float(np.percentile(upper, percentile))


def absorb_small_clusters(embeddings: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Move the windows of clusters smaller than `min_size` to the most similar larger cluster.

    Windows that straddle a speaker change or hold a cough form tiny clusters of their own; they
    are not speakers. When no cluster is large enough, the labels are returned unchanged.
    """
    labels = np.asarray(labels).copy()
    ids, counts = np.unique(labels, return_counts=True)
    large = ids[counts >= min_size]
    if len(large) == 0 or len(large) == len(ids):
        return labels
    centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in large])
    centroids = normalize(centroids)
    small = ~np.isin(labels, large)
    labels[small] = large[np.argmax(embeddings[small] @ centroids.T, axis=1)]
    return labels


def _relabel_by_first_appearance(turns: list[Turn]) -> tuple[Turn, ...]:
    """Clusters renamed SPEAKER_00, SPEAKER_01… in the order they first speak."""
    names = {c: f"SPEAKER_{i:02d}" for i, c in enumerate(first_appearance(turns))}
    return tuple(Turn(t.start, t.end, names[t.speaker]) for t in sorted(turns, key=lambda t: (t.start, t.end)))


def _pipeline_path(name: str) -> Path:
    """A local pyannote pipeline: a folder with config.yaml (community-1, 3.1), or the yaml itself."""
    p = Path(name).expanduser()
    if p.is_file() and p.suffix in (".yaml", ".yml"):
        return p
    if (p / "config.yaml").is_file():
        return p
    raise ModelNotFound(f"pyannote pipeline {name!r}: no config.yaml there (a local pipeline folder is needed; no hub access)")


class _Progress:
    """pyannote's hook, called between its batches: threads follow the cores' share
    (`lib.threads.rebalance`), and a long diarization logs how far it is every `every_s` seconds."""

    def __init__(self, audio_seconds: float, every_s: float = 30.0):
        self.audio_seconds = audio_seconds
        self.every_s = every_s
        self.started = self.logged = time.perf_counter()

    def __call__(self, step: str, artifact: Any = None, file: Any = None, total: int | None = None, completed: int | None = None) -> None:
        threads.rebalance()
        now = time.perf_counter()
        if total and completed is not None and now - self.logged >= self.every_s:
            self.logged = now
            log.info(
                "pyannote on %.0f s of audio: %s %d/%d batches, %.0f s so far",
                self.audio_seconds, step, min(completed, total), total, now - self.started,
            )


class Diarizer:
    """Speaker turns of one `Audio`; the pyannote pipeline is built lazily, once per Diarizer."""

    def __init__(self, options: DiarizationOptions, embedder: EcapaEmbedder):
        self.options = options
        self.embedder = embedder
        self.device = embedder.device
        self._pipeline: Any = None
        self._pyannote_lock = threading.Lock()  # one call at a time on a pipeline (the service is threaded)

    @property
    def pyannote_loaded(self) -> bool:
        return self._pipeline is not None

    # -- the recipe -------------------------------------------------------------------------------
    def diarize(self, audio: Audio, speech_regions: Sequence[Region] | None = None, embed: EmbedFn | None = None) -> Diarization:
        """Turns of `audio`; `speech_regions` when VAD already ran, `embed` to embed ECAPA windows
        some other way (the model service batches them across the videos in flight)."""
        started = time.perf_counter()
        method = self.options.method
        wav = np.ascontiguousarray(audio.waveform, dtype=np.float32).reshape(-1)
        if audio.seconds < MIN_AUDIO_SECONDS:
            regions: list[Region] = []
        else:
            regions = list(speech_regions) if speech_regions is not None else vad.speech_regions(wav)
        if not regions:
            log.info("video %s: no speech, empty diarization", audio.meta.video_id)
            return self._result(audio, (), "fast_path" if method == "auto" else method, started)
        if method == "off":
            return self._result(audio, single_speaker_turns(regions), "off", started)
        if method == "simple":
            return self._result(audio, self.simple_turns(wav, regions, embed), "simple", started)
        score = None
        if method == "auto":
            score = self.monologue_score(wav, regions, embed)
            if score is None or score >= self.options.monologue_threshold:
                log.info(
                    "Monologue fast-path detected: video %s, score %s >= %.2f",
                    audio.meta.video_id, "n/a" if score is None else f"{score:.3f}", self.options.monologue_threshold,
                )
                return self._result(audio, single_speaker_turns(regions), "fast_path", started, score)
            log.info("video %s: several voices (score %.3f), running pyannote", audio.meta.video_id, score)
        return self._result(audio, self.pyannote_turns(wav), "pyannote", started, score)

    def _result(
        self, audio: Audio, turns: tuple[Turn, ...], method: str, started: float, score: float | None = None
    ) -> Diarization:
        result = Diarization(
            video_id=audio.meta.video_id,
            turns=turns,
            method=method,
            fast_path=method == "fast_path",
            speakers=len({t.speaker for t in turns}),
            seconds=time.perf_counter() - started,
            monologue_score=score,
        )
        log.info(
            "video %s: %s diarization, %d turns, %d speakers, %.1f s",
            audio.meta.video_id, method, len(turns), result.speakers, result.seconds,
        )
        return result

    # -- stages -----------------------------------------------------------------------------------
    def monologue_score(self, wav: np.ndarray, regions: Sequence[Region] | None = None, embed: EmbedFn | None = None) -> float | None:
        """The monologue statistic (None when there is too little speech for two windows)."""
        o = self.options
        if regions is None:
            regions = vad.speech_regions(wav)
        windows = spread_windows(regions, o.monologue_windows, o.monologue_window_s)
        if len(windows) < 2:
            return None
        emb = (embed or self.embedder.embed)([_slice(wav, w) for w in windows])
        return pairwise_similarity_percentile(emb, o.monologue_percentile)

    def simple_turns(self, wav: np.ndarray, regions: Sequence[Region], embed: EmbedFn | None = None) -> tuple[Turn, ...]:
        """Sliding windows over the speech, ECAPA embeddings, agglomerative clustering (cosine)."""
        from sklearn.cluster import AgglomerativeClustering

        o = self.options
        step = max(o.simple_step_s, vad.speech_seconds(regions) / o.simple_max_windows)
        windows: list[Region] = []
        for a, b in regions:
            if b - a <= o.simple_window_s:
                windows.append((a, b))
                continue
            starts = np.arange(a, b - o.simple_window_s + 1e-6, step)
            windows += [(float(s), float(s) + o.simple_window_s) for s in starts]
            if windows[-1][1] < b:
                windows.append((b - o.simple_window_s, b))
        emb = (embed or self.embedder.embed)([_slice(wav, w) for w in windows])
        if len(windows) == 1:
            labels = np.zeros(1, dtype=int)
        else:
            labels = AgglomerativeClustering(
                n_clusters=None, metric="cosine", linkage="average", distance_threshold=o.simple_threshold
            ).fit_predict(emb)
            labels = absorb_small_clusters(emb, labels, int(np.ceil(o.simple_min_cluster_s / step)))
        # each window owns the time nearest its centre; consecutive windows of one cluster merge
        turns: list[Turn] = []
        centres = np.array([(a + b) / 2 for a, b in windows])
        for a, b in regions:
            inside = [i for i, c in enumerate(centres) if a <= c <= b]
            for j, i in enumerate(inside):
                start = a if j == 0 else (centres[inside[j - 1]] + centres[i]) / 2
                end = b if j == len(inside) - 1 else (centres[i] + centres[inside[j + 1]]) / 2
                speaker = f"C{labels[i]}"
                if turns and turns[-1].speaker == speaker and abs(turns[-1].end - start) < 1e-6:
                    turns[-1] = Turn(turns[-1].start, float(end), speaker)
                else:
                    turns.append(Turn(float(start), float(end), speaker))
        return _relabel_by_first_appearance(turns)

    def load_pyannote(self) -> Any:
        """Build the pyannote pipeline once (imports pyannote.audio on first use); the build is
        recorded as a `pyannote` load in the current step clock (`lib.clock`)."""
        with self._pyannote_lock:
            if self._pipeline is None:
                started = time.time()
                self._pipeline = self._build_pyannote()
                clock.record_load("pyannote", started, time.time())
        return self._pipeline

    def _build_pyannote(self) -> Any:
        if self.options.pyannote_model:
            _pipeline_path(self.options.pyannote_model)  # fail before importing pyannote
        import torch

        pyannote_compat.apply()
        from pyannote.audio import Model, Pipeline
        from pyannote.audio.pipelines import SpeakerDiarization

        started = time.perf_counter()
        if self.options.pyannote_model:
            pipeline = Pipeline.from_pretrained(str(_pipeline_path(self.options.pyannote_model)))
            if pipeline is None:
                raise ModelNotFound(f"pyannote pipeline {self.options.pyannote_model!r} could not be loaded")
        else:
            embedding = str(self.embedder.path)
            if "speechbrain" not in embedding:
                raise ModelNotFound(f"ECAPA folder {embedding} must have 'speechbrain' in its path for pyannote")
            pipeline = SpeakerDiarization(
                segmentation=Model.from_pretrained(str(segmentation_dir())),
                segmentation_step=self.options.pyannote_step,
                embedding=embedding,
                plda=None,
                clustering="AgglomerativeClustering",
                embedding_batch_size=32,
                segmentation_batch_size=32,
            )
            pipeline.instantiate(PYANNOTE_PARAMS)
        pipeline.to(torch.device(self.device))
        log.info("built pyannote pipeline on %s in %.1f s", self.device, time.perf_counter() - started)
        return pipeline

    def pyannote_turns(self, wav: np.ndarray) -> tuple[Turn, ...]:
        import torch

        pipeline = self.load_pyannote()  # a load is start-up, not inference
        progress = _Progress(len(wav) / SAMPLE_RATE)
        with self._pyannote_lock, clock.model_call("pyannote"):
            output = pipeline({"waveform": torch.from_numpy(wav).unsqueeze(0), "sample_rate": SAMPLE_RATE}, hook=progress)
        annotation = getattr(output, "speaker_diarization", output)  # DiarizeOutput (4.x) or Annotation
        turns = [Turn(float(s.start), float(s.end), str(label)) for s, _, label in annotation.itertracks(yield_label=True)]
        return _relabel_by_first_appearance(turns)
