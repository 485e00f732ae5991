"""Every contract that crosses a module boundary, in one module (whisperX's `schema.py` is the
model): what the pipeline stages pass each other and store as artifacts, what the model service
answers, what the archive reports.

Times are seconds from the start of the video's audio. Everything here is plain data: frozen
dataclasses that serialise to JSON through `chaffee_assets.lib.artifacts`, and that a process
unpickles without importing any model library (the model service returns them to the runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np

from chaffee_assets.lib.vectors import normalize

SAMPLE_RATE = 16_000
T = TypeVar("T")

Region = tuple[float, float]  # (start, end) seconds of speech


# -- options (built once from the settings, passed down; the model service receives them) ----------


@dataclass(frozen=True)
class AsrOptions:
    model: str = "tiny.en"  # packaged alias (tiny.en, base) or a CTranslate2 folder
    batch_size: int = 8
    language: str | None = None  # None: detected (always en for .en models)
    beam_size: int = 5
    vad: bool = True
    initial_prompt: str | None = None  # the channel's vocabulary (names, terms) as a sentence
    hotwords: str | None = None
    language_windows: int = 4  # 30 s windows the language is detected over (multilingual models)
    # the guard (whisper's own thresholds): a segment compressing better than `max_compression_ratio`
    # is a repetition loop, one under `min_avg_logprob` a low-confidence stretch, one with
    # `no_speech_prob` over `max_no_speech_prob` and low confidence a hallucination over non-speech.
    # A window flagged as a loop whose words, cut into pieces of <= 10 s, do not loop is a speaker
    # repeating himself and kept; other flagged windows are decoded again in those pieces
    # (deterministic: no sampling), and the pieces that still fail are dropped.
    max_compression_ratio: float = 2.4
    min_avg_logprob: float = -1.0
    max_no_speech_prob: float = 0.6
    # an English-only model's transcript checked for other languages: `language_windows` of its
    # windows, spread over the talk, heard by this multilingual model (None: no check)
    language_check: str | None = "base"


METHODS = ("hybrid", "auto", "pyannote", "simple", "off")


@dataclass(frozen=True)
class DiarizationOptions:
    method: str = "hybrid"  # hybrid (check, then simple) | auto (check, then pyannote) | pyannote | simple | off
    pyannote_model: str | None = None  # a local pyannote pipeline folder; None: packaged models
    # speaker count bounds for pyannote and simple (None: free); the monologue check's "several"
    # raises the lower bound to 2
    min_speakers: int | None = None
    max_speakers: int | None = None
    # The monologue check (lib/models/diarize.py `monologue_check`; numbers from bench/quality.py).
    # ECAPA windows of `monologue_window_s` spread over the speech, one per `monologue_spacing_s` of
    # speech and at least `monologue_min_windows` (so a voice of 3 % of a short talk still gets
    # several windows); the segmentation model over the audio in `monologue_segment_step_s` steps for
    # overlapped speech. A second voice must be caught once it speaks `monologue_minority_share` of
    # the speech or `monologue_minority_seconds`, whichever is smaller ("needed"); the check says
    # several when the foreign speech (windows with cosine < `monologue_foreign_similarity` to the
    # dominant voice, at least two of them), a cluster of windows whose centroid has cosine <
    # `monologue_cluster_similarity` to the main cluster's (similar voices in one room), or the
    # overlapped speech reaches `monologue_catch` x needed.
    monologue_window_s: float = 2.0
    monologue_spacing_s: float = 10.0
    monologue_min_windows: int = 100
    monologue_max_windows: int = 3000
    monologue_foreign_similarity: float = 0.3
    monologue_cluster_similarity: float = 0.35  # a window cluster whose centroid is this unlike the main one is a voice
    monologue_minority_share: float = 0.03
    monologue_minority_seconds: float = 30.0
    monologue_catch: float = 0.5
    monologue_overlap: bool = True
    monologue_segment_step_s: float = 10.0
    monologue_min_speech_s: float = 3.0  # less speech: "too little to judge", one voice (README)
    pyannote_step: float = 0.1  # segmentation window step, as a fraction of its 10 s window
    # simple: windows of `simple_window_s` every `simple_step_s`, clusters cut at cosine distance
    simple_window_s: float = 1.5
    simple_step_s: float = 0.75
    simple_threshold: float = 0.7
    simple_min_cluster_s: float = 3.0  # a cluster of less speech joins its nearest larger cluster
    simple_max_windows: int = 4000  # the step grows on long audio (clustering is quadratic in windows)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown diarization method {self.method!r}: expected one of {', '.join(METHODS)}")
        lo, hi = self.min_speakers, self.max_speakers
        if (lo is not None and lo < 1) or (hi is not None and hi < 1) or (lo is not None and hi is not None and lo > hi):
            raise ValueError(f"speaker bounds min {lo} / max {hi}: both at least 1 and min <= max")


@dataclass(frozen=True)
class PassageOptions:
    max_seconds: float = 45.0
    max_tokens: int = 200

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens!r}")


# -- the pipeline's data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoMeta:
    video_id: str
    title: str
    source_url: str  # what a user opens: the YouTube watch URL, a media URL, or file:// path
    upload_date: str | None = None  # ISO date, YYYY-MM-DD
    duration_s: float = 0.0
    size_bytes: int = 0
    channel: str | None = None
    listed_s: float = 0.0  # the duration the source reports (yt-dlp's info); 0 when it reports none


@dataclass(frozen=True)
class Source:
    """Where a video comes from: a channel or feed entry, a URL or a file a user named."""

    video_id: str  # validated: a partition key
    url: str  # what `media.download.fetch_audio` takes: a YouTube watch URL, a media URL, a file
    title: str | None = None
    upload_date: str | None = None  # ISO date, YYYY-MM-DD
    origin: str = "listing"  # "cli": named by the user on the command line (local files allowed); "listing"


@dataclass(frozen=True, eq=False)
class Audio:
    """16 kHz mono float32 waveform plus what we know of the video."""

    meta: VideoMeta
    waveform: np.ndarray  # shape (n,), float32 in [-1, 1], SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


@dataclass(frozen=True)
class AudioRef:
    """The `audio` asset: a video's sound as the runs pass it. The waveform itself (16 kHz mono)
    stays in the artifact store at `url`; the model service reads it from there."""

    meta: VideoMeta
    url: str  # the waveform in the artifact store (a path or an fsspec URL)
    seconds: float
    speech: tuple[Region, ...] = ()  # silero VAD's speech regions, found once per video

    @property
    def video_id(self) -> str:
        return self.meta.video_id

    @property
    def speech_seconds(self) -> float:
        return float(sum(b - a for a, b in self.speech))


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str  # as the ASR wrote it, leading space included
    probability: float = 1.0
    speaker: str | None = None


@dataclass(frozen=True)
class TranscriptInfo:
    model: str
    device: str
    language: str
    language_probability: float
    audio_seconds: float
    processing_seconds: float
    batch_size: int
    segments: int = 0  # whisper segments decoded
    redecoded_segments: int = 0  # windows flagged by the guard and decoded again in pieces
    dropped_segments: int = 0  # stretches (pieces or their segments) still failing the guard: not in `words`, never indexed
    dropped_seconds: float = 0.0
    flags: tuple[tuple[float, float, str], ...] = ()  # (start, end, loop | low_confidence | no_speech) of dropped segments
    multilingual: bool = False  # the language was detected per 30 s window (a talk may switch)
    # English-only model: (window start, language, probability) of checked windows heard in another language
    other_languages: tuple[tuple[float, str, float], ...] = ()
    language_checked: int = 0  # windows the language check heard


@dataclass(frozen=True)
class Transcript:
    video_id: str
    words: tuple[Word, ...]
    info: TranscriptInfo

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words).strip()


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str  # a cluster label ("SPEAKER_00") before naming, a name after


ONE_VOICE, SEVERAL_VOICES, TOO_LITTLE_SPEECH = "one", "several", "too_little"


@dataclass(frozen=True)
class MonologueCheck:
    """What the monologue check measured on one video (all in seconds of speech but `windows`)."""

    decision: str  # one | several | too_little (too little speech to judge: one voice, README)
    speech_seconds: float
    needed_seconds: float  # the smallest second voice the check must catch: min(3 % of speech, 30 s)
    windows: int  # ECAPA windows embedded
    foreign_seconds: float  # speech of windows unlike the dominant voice
    overlap_seconds: float | None  # overlapped speech found by the segmentation model (None: not run)
    lowest_similarity: float | None  # the window least like the dominant voice (a one-voice talk's margin)
    seconds: float  # what the check cost
    cluster_seconds: float = 0.0  # speech of the window cluster most unlike the main one, when unlike enough
    cluster_similarity: float | None = None  # that cluster's centroid against the main cluster's (the other margin)

    @property
    def score(self) -> float:
        """The second voice's evidence over the speech it must have to be caught (several at >= the catch ratio)."""
        evidence = max(self.foreign_seconds, self.cluster_seconds, self.overlap_seconds or 0.0)
        return evidence / max(self.needed_seconds, 1e-9)


@dataclass(frozen=True)
class Diarization:
    video_id: str
    turns: tuple[Turn, ...]
    method: str  # off | fast_path | simple | pyannote
    fast_path: bool
    speakers: int
    seconds: float
    monologue_score: float | None = None  # MonologueCheck.score, when the check ran
    check: MonologueCheck | None = None


@dataclass(frozen=True)
class SpeakerLabels:
    """Turns with names, and the transcript's words each tagged with the speaker of its turn."""

    video_id: str
    turns: tuple[Turn, ...]
    words: tuple[Word, ...]
    names: dict[str, str] = field(default_factory=dict)  # cluster label -> name
    similarities: dict[str, float] = field(default_factory=dict)  # cluster label -> best profile cosine


@dataclass(frozen=True)
class Passage:
    video_id: str
    ordinal: int
    start: float
    end: float
    speaker: str
    text: str
    n_words: int


@dataclass(frozen=True)
class Passages:
    video_id: str
    passages: tuple[Passage, ...]


@dataclass(frozen=True, eq=False)
class PassageVectors:
    """One row per passage (same order as `Passages.passages`), L2-normalised."""

    video_id: str
    model: str
    vectors: np.ndarray  # shape (n_passages, dim), float32

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0


@dataclass(frozen=True)
class SearchHit:
    score: float
    video_id: str
    title: str
    speaker: str
    start: float
    end: float
    text: str
    url: str
    upload_date: str | None = None  # ISO date of the video's upload, when known


# -- voices ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Profile:
    """An enrolled voice: the unit mean of ECAPA embeddings of a person's clips."""

    name: str
    centroid: np.ndarray  # (dim,) float32, unit length
    model_id: str
    n_clips: int
    sources: tuple[dict, ...] = field(default_factory=tuple)  # {"path", "start", "end"}

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "embedding_model": self.model_id,
            "dim": int(self.centroid.shape[0]),
            "n_clips": self.n_clips,
            "centroid": [float(x) for x in self.centroid],
            "sources": list(self.sources),
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_json(cls, data: dict) -> Profile:
        centroid = np.asarray(data["centroid"], dtype=np.float32)
        if centroid.ndim != 1 or centroid.size == 0 or not np.all(np.isfinite(centroid)):
            raise ValueError("centroid must be a non-empty list of finite numbers")
        return cls(
            name=str(data["name"]),
            centroid=normalize(centroid),
            model_id=str(data["embedding_model"]),
            n_clips=int(data["n_clips"]),
            sources=tuple(data.get("sources", ())),
        )


# -- the model service ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Served(Generic[T]):
    """A model service answer: the value, and where its time went inside the service."""

    value: T
    seconds_by_model: dict[str, float] = field(default_factory=dict)  # model -> seconds computing
    replica: str = ""  # which replica answered (its node and process)
    batch: dict[str, Any] = field(default_factory=dict)  # for batched calls: {"id", "callers", "items"}


@dataclass(frozen=True)
class ReplicaInfo:
    """One model service replica, as `chaffee status` shows it."""

    replica: str  # node:pid
    node_id: str
    device: str
    models_loaded: tuple[str, ...]
    requests_served: int
    in_flight: int
    rss_bytes: int
    gpu_memory_bytes: int = 0


@dataclass(frozen=True)
class EmbedStats:
    videos: int
    passages: int
    batches: int
    batch_size: int
    seconds: float

    @property
    def passages_per_s(self) -> float:
        return self.passages / self.seconds if self.seconds > 0 else 0.0


# -- the archive ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowCounts:
    """What `archive.writer.write_video` left in the database for one video."""

    video_id: str
    model: str
    segments: int  # segments stored for the video
    vectors: int  # vectors of `model` stored for the video
    segments_replaced: bool
    vectors_replaced: bool
    index_created: bool
    seconds: float


@dataclass(frozen=True)
class ModelInfo:
    """One embedding model's vectors in the archive."""

    model: str
    dim: int
    created_at: object  # datetime
    videos_covered: int
    videos_with_passages: int

    @property
    def complete(self) -> bool:
        return self.videos_covered > 0 and self.videos_covered >= self.videos_with_passages


# -- checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One check of a stage's output (`lib.checks`): reported as a Dagster asset check."""

    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


# -- runs -----------------------------------------------------------------------------------------


class StepEvent(NamedTuple):
    """The fields of a Dagster step event that a run's stage timing needs (`lib.stages`)."""

    timestamp: float
    kind: str  # STEP_START | ASSET_MATERIALIZATION | STEP_SUCCESS | STEP_FAILURE
    step: str
    asset: str | None
