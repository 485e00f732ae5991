"""Typed data contracts passed between the pipeline stages (and stored as artifacts).

Times are seconds from the start of the video's audio. Everything here is plain data:
frozen dataclasses that serialise to JSON through `chaffee_assets.lib.artifacts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class VideoMeta:
    video_id: str
    title: str
    source_url: str  # what a user opens: the YouTube watch URL, a media URL, or file:// path
    upload_date: str | None = None  # ISO date, YYYY-MM-DD
    duration_s: float = 0.0
    size_bytes: int = 0
    channel: str | None = None


@dataclass(frozen=True, eq=False)
class Audio:
    """16 kHz mono float32 waveform plus what we know of the video."""

    meta: VideoMeta
    waveform: np.ndarray  # shape (n,), float32 in [-1, 1], SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return len(self.waveform) / SAMPLE_RATE


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


@dataclass(frozen=True)
class Diarization:
    video_id: str
    turns: tuple[Turn, ...]
    method: str  # off | fast_path | simple | pyannote
    fast_path: bool
    speakers: int
    seconds: float
    monologue_score: float | None = None  # the monologue check's statistic, when it ran


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
