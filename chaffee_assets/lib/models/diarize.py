"""Who speaks when: a cheap monologue check first, pyannote only when more than one voice is heard.

Methods (`DiarizationOptions.method`):
- `off`: every speech region is one turn of `SPEAKER_00` (the old `ASSUME_MONOLOGUE=true`).
- `hybrid` (the default): the monologue check, then `simple` where it hears several voices (told at
  least two). Chosen by bench/speech_quality.py: as good as the check + pyannote on meeting
  excerpts (DER 47.9 % against 49.1 % at a 0.25 s collar), better on spliced interviews (11.5 %
  against 17.3 %), 12x cheaper (49 s against 612 s for pyannote on the 17 recordings, 2-core CPU).
- `auto`: the monologue check (`Diarizer.monologue_check`): ECAPA embeddings of short windows spread
  over the speech (more on longer talks) and the segmentation model's overlapped speech; when no
  second voice is heard the speech regions are the turns of one speaker (the *fast path*: the
  pyannote pipeline is never built); otherwise pyannote runs, told there are at least two speakers.
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
from chaffee_assets.lib.types import (
    ONE_VOICE,
    SAMPLE_RATE,
    SEVERAL_VOICES,
    TOO_LITTLE_SPEECH,
    Audio,
    Diarization,
    DiarizationOptions,
    MonologueCheck,
    Region,
    Turn,
)
from chaffee_assets.lib.vectors import normalize

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[np.ndarray]], np.ndarray]  # waveform chunks -> (n, 192) unit rows

MIN_AUDIO_SECONDS = 1.0  # shorter audio: empty diarization, like the transcript
MIN_WINDOW_SECONDS = 1.0  # a monologue-check window shorter than this is not embedded
SINGLE = "SPEAKER_00"

# pyannote's parameters for the packaged segmentation-3.0 + ECAPA. The clustering threshold was 0.7
# (tuned on the one 30 s sample); over 14 AMI meeting excerpts and 3 spliced interviews
# (bench/speech_quality.py, thresholds 0.6-1.0) 0.9 splits returning speakers less: mean DER at a
# 0.25 s collar 40.0 -> 36.9 % on the meetings, 25.2 -> 17.3 % on the interviews, the sample 1.3 %.
PYANNOTE_PARAMS = {
    "segmentation": {"min_duration_off": 0.0},
    "clustering": {"method": "centroid", "min_cluster_size": 12, "threshold": 0.9},
}




def clip_turns(turns: Sequence[Turn], seconds: float) -> tuple[Turn, ...]:
    """Turns inside the audio: ends past its length are cut there, turns left empty dropped."""
    out = (Turn(max(0.0, t.start), min(t.end, seconds), t.speaker) for t in turns)
    return tuple(t for t in out if t.end > t.start)


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


def dominant_similarity(embeddings: np.ndarray, rounds: int = 5) -> np.ndarray:
    """Each row's cosine similarity to the dominant voice: the centroid of the rows at or above the
    median similarity to the previous centroid (from the mean, `rounds` times), so a minority voice
    or a few odd windows do not pull it."""
    centroid = normalize(embeddings.mean(axis=0, keepdims=True))[0]
    for _ in range(rounds):
        sims = embeddings @ centroid
        centroid = normalize(embeddings[sims >= np.median(sims)].mean(axis=0, keepdims=True))[0]
    return embeddings @ centroid


def distinct_cluster(embeddings: np.ndarray, max_clusters: int = 4) -> tuple[int, float | None]:
    """The window cluster least like the main one, over the average-linkage trees cut at 2 to
    `max_clusters` clusters: (its windows, its centroid's cosine to the main cluster's centroid);
    clusters of one window are ignored. (0, None) when there is none."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if len(embeddings) < 4:
        return 0, None
    tree = linkage(embeddings.astype(np.float64), method="average", metric="cosine")
    best: tuple[int, float | None] = (0, None)
    for k in range(2, max_clusters + 1):
        labels = fcluster(tree, k, criterion="maxclust")
        ids, counts = np.unique(labels, return_counts=True)
        main = ids[np.argmax(counts)]
        centre = normalize(embeddings[labels == main].mean(axis=0, keepdims=True))[0]
        for cluster, count in zip(ids, counts, strict=True):
            if cluster == main or count < 2:
                continue
            sim = float(normalize(embeddings[labels == cluster].mean(axis=0, keepdims=True))[0] @ centre)
            if best[1] is None or sim < best[1]:
                best = (int(count), sim)
    return best


def _chunks_with_speech(samples: int, size: int, step: int, regions: Sequence[Region]) -> list[int]:
    """Start samples of the `size`-sample chunks every `step` samples that overlap a speech region
    (regions sorted and disjoint, as VAD gives them); the last chunk may run past the end."""
    if not regions:
        return []
    starts = np.arange(0, samples, step)
    begins = np.array([a for a, _ in regions]) * SAMPLE_RATE
    ends = np.array([b for _, b in regions]) * SAMPLE_RATE
    first = np.searchsorted(ends, starts, side="right")  # the first region ending after each start
    ok = (first < len(regions)) & (begins[np.minimum(first, len(regions) - 1)] < starts + size)
    return [int(s) for s in starts[ok]]


def needed_seconds(speech_seconds: float, options: DiarizationOptions) -> float:
    """The least speech of a second voice the check must catch: the smaller of the share and the
    seconds (at least one second: below that nothing is a voice)."""
    return max(1.0, min(options.monologue_minority_share * speech_seconds, options.monologue_minority_seconds))


def monologue_windows(regions: Sequence[Region], options: DiarizationOptions) -> list[Region]:
    """The check's windows: one per `monologue_spacing_s` of speech, at least `monologue_min_windows`."""
    speech = vad.speech_seconds(list(regions))
    n = max(options.monologue_min_windows, int(speech / options.monologue_spacing_s))
    return spread_windows(list(regions), min(n, options.monologue_max_windows), options.monologue_window_s)


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


def load_segmentation_model(device: str) -> tuple[Any, Any, float]:
    """The packaged segmentation-3.0 alone, on `device`: (model, its powerset, its window in seconds)."""
    import torch

    pyannote_compat.apply()
    from pyannote.audio import Model
    from pyannote.audio.utils.powerset import Powerset

    model = Model.from_pretrained(str(segmentation_dir()))
    model.eval()
    model.to(torch.device(device))
    spec = model.specifications
    return model, Powerset(len(spec.classes), spec.powerset_max_classes), float(spec.duration)


class Diarizer:
    """Speaker turns of one `Audio`; the pyannote pipeline is built lazily, once per Diarizer."""

    def __init__(self, options: DiarizationOptions, embedder: EcapaEmbedder,
                 segmentation: Callable[[], tuple[Any, Any, float]] | None = None):
        """`segmentation`: gives the loaded segmentation model (the check's overlap detector), for a
        model service that holds one for every Diarizer; None: this Diarizer loads its own at first use."""
        self.options = options
        self.embedder = embedder
        self.device = embedder.device
        self._pipeline: Any = None
        self._pyannote_lock = threading.Lock()  # one call at a time on a pipeline (the service is threaded)
        self._segmentation: tuple[Any, Any, float] | None = None
        self._segmentation_lock = threading.Lock()
        self._shared_segmentation = segmentation

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
            turns = self.simple_turns(wav, regions, embed, self.options.min_speakers, self.options.max_speakers)
            return self._result(audio, turns, "simple", started)
        check = None
        min_speakers = self.options.min_speakers
        if method in ("auto", "hybrid"):
            check = self.monologue_check(wav, regions, embed)
            if check.decision != SEVERAL_VOICES:
                log.info(
                    "Monologue fast-path detected: video %s, %s (second-voice evidence %.2f of the %.1f s needed, "
                    "%.1f s of speech, %d windows)",
                    audio.meta.video_id, "one voice" if check.decision == ONE_VOICE else "too little speech to judge",
                    check.score, check.needed_seconds, check.speech_seconds, check.windows,
                )
                return self._result(audio, single_speaker_turns(regions), "fast_path", started, check)
            log.info("video %s: several voices (evidence %.2f x the %.1f s needed), running %s", audio.meta.video_id,
                     check.score, check.needed_seconds, "pyannote" if method == "auto" else "simple clustering")
            min_speakers = max(2, min_speakers or 2)
            if method == "hybrid":
                turns = self.simple_turns(wav, regions, embed, min_speakers, self.options.max_speakers)
                return self._result(audio, turns, "simple", started, check)
        return self._result(audio, self.pyannote_turns(wav, min_speakers, self.options.max_speakers), "pyannote", started, check)

    def _result(
        self, audio: Audio, turns: tuple[Turn, ...], method: str, started: float, check: MonologueCheck | None = None
    ) -> Diarization:
        turns = clip_turns(turns, audio.seconds)
        result = Diarization(
            video_id=audio.meta.video_id,
            turns=turns,
            method=method,
            fast_path=method == "fast_path",
            speakers=len({t.speaker for t in turns}),
            seconds=time.perf_counter() - started,
            monologue_score=None if check is None else check.score,
            check=check,
        )
        log.info(
            "video %s: %s diarization, %d turns, %d speakers, %.1f s",
            audio.meta.video_id, method, len(turns), result.speakers, result.seconds,
        )
        return result

    # -- stages -----------------------------------------------------------------------------------
    def monologue_check(self, wav: np.ndarray, regions: Sequence[Region] | None = None, embed: EmbedFn | None = None) -> MonologueCheck:
        """Is a second voice speaking? ECAPA windows against the dominant voice, then overlapped
        speech from the segmentation model (skipped once the windows have decided)."""
        started = time.perf_counter()
        o = self.options
        if regions is None:
            regions = vad.speech_regions(wav)
        speech = vad.speech_seconds(list(regions))
        need = needed_seconds(speech, o)
        windows = monologue_windows(regions, o) if speech >= o.monologue_min_speech_s else []
        if len(windows) < 2:
            return MonologueCheck(TOO_LITTLE_SPEECH, speech, need, len(windows), 0.0, None, None, time.perf_counter() - started)
        emb = (embed or self.embedder.embed)([_slice(wav, w) for w in windows])
        sims = dominant_similarity(emb)
        foreign = int((sims < o.monologue_foreign_similarity).sum())
        per_window = speech / len(windows)
        foreign_s = foreign * per_window if foreign >= 2 else 0.0  # one odd window is not a voice
        count, cluster_sim, cluster_s = 0, None, 0.0
        if foreign_s < o.monologue_catch * need:  # the clustering (quadratic in windows) only when still undecided
            count, cluster_sim = distinct_cluster(emb)
            cluster_s = count * per_window if cluster_sim is not None and cluster_sim < o.monologue_cluster_similarity else 0.0
        overlap_s = None
        if max(foreign_s, cluster_s) < o.monologue_catch * need and o.monologue_overlap:
            overlap_s = self.overlap_seconds(wav, regions)
        several = max(foreign_s, cluster_s, overlap_s or 0.0) >= o.monologue_catch * need
        return MonologueCheck(
            SEVERAL_VOICES if several else ONE_VOICE, round(speech, 3), round(need, 3), len(windows), round(foreign_s, 3),
            None if overlap_s is None else round(overlap_s, 3), round(float(sims.min()), 4), time.perf_counter() - started,
            round(cluster_s, 3), None if cluster_sim is None else round(cluster_sim, 4),
        )

    def load_segmentation(self) -> tuple[Any, Any, float]:
        """The segmentation model alone (the check's overlap detector): (model, powerset, window s)."""
        if self._shared_segmentation is not None:
            return self._shared_segmentation()
        with self._segmentation_lock:
            if self._segmentation is None:
                started = time.time()
                self._segmentation = load_segmentation_model(self.device)
                clock.record_load("segmentation", started, time.time())
        return self._segmentation

    def overlap_seconds(self, wav: np.ndarray, regions: Sequence[Region], batch: int = 32) -> float:
        """Seconds where the segmentation model hears two speakers at once, over the windows (of its
        10 s, every `monologue_segment_step_s`) that hold speech."""
        import torch

        model, powerset, duration = self.load_segmentation()
        size, step = int(duration * SAMPLE_RATE), max(1, int(self.options.monologue_segment_step_s * SAMPLE_RATE))
        starts = _chunks_with_speech(wav.size, size, step, regions)
        overlapped = 0.0
        with clock.model_call("segmentation"), torch.inference_mode():
            for b in range(0, len(starts), batch):
                threads.rebalance()
                chunk = np.zeros((len(starts[b : b + batch]), 1, size), dtype=np.float32)
                for row, s in enumerate(starts[b : b + batch]):
                    piece = wav[s : s + size]
                    chunk[row, 0, : piece.size] = piece
                active = powerset.to_multilabel(model(torch.from_numpy(chunk).to(model.device))).cpu().numpy()
                frame = duration / active.shape[1]
                overlapped += float((active.sum(axis=2) >= 2).sum()) * frame
        return overlapped * min(1.0, step / size)

    def simple_turns(self, wav: np.ndarray, regions: Sequence[Region], embed: EmbedFn | None = None,
                     min_speakers: int | None = None, max_speakers: int | None = None) -> tuple[Turn, ...]:
        """Sliding windows over the speech, ECAPA embeddings, agglomerative clustering (cosine),
        the number of clusters held within [`min_speakers`, `max_speakers`]."""
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
            found = len(np.unique(labels))
            bounded = min(max(found, min_speakers or 1), max_speakers or len(windows), len(windows))
            if bounded != found:  # MIN_SPEAKERS / MAX_SPEAKERS: cut the same tree at that many clusters
                labels = AgglomerativeClustering(n_clusters=bounded, metric="cosine", linkage="average").fit_predict(emb)
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

    def pyannote_turns(self, wav: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None) -> tuple[Turn, ...]:
        import torch

        pipeline = self.load_pyannote()  # a load is start-up, not inference
        progress = _Progress(len(wav) / SAMPLE_RATE)
        bounds = {k: v for k, v in (("min_speakers", min_speakers), ("max_speakers", max_speakers)) if v is not None}
        if "min_speakers" in bounds and "max_speakers" in bounds:
            bounds["min_speakers"] = min(bounds["min_speakers"], bounds["max_speakers"])
        with self._pyannote_lock, clock.model_call("pyannote"):
            output = pipeline({"waveform": torch.from_numpy(wav).unsqueeze(0), "sample_rate": SAMPLE_RATE}, hook=progress, **bounds)
        annotation = getattr(output, "speaker_diarization", output)  # DiarizeOutput (4.x) or Annotation
        turns = [Turn(float(s.start), float(s.end), str(label)) for s, _, label in annotation.itertracks(yield_label=True)]
        return _relabel_by_first_appearance(turns)
