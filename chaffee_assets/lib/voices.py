"""Enrolled voice profiles: `<voices_dir>/<Name>/profile.json`.

A profile is the L2-normalised running mean of ECAPA embeddings of a person's clips, with the id of
the embedding model that made it (a profile is only comparable with embeddings of the same model)
and the list of clips it was built from.

Loading policy: a missing voices folder gives [] with a warning (nothing enrolled yet). A profile
made with another embedding model, or an unreadable profile.json, raises `VoiceProfileError` by
default (`strict=True`): naming every speaker "Guest" because the profiles went stale would be a
silent quality failure across the whole archive. `strict=False` skips such profiles with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from chaffee_assets.lib.errors import VoiceProfileError
from chaffee_assets.lib.types import SAMPLE_RATE

log = logging.getLogger(__name__)

PROFILE_FILE = "profile.json"
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _-]{0,62}[A-Za-z0-9_-])?$")
ENROLL_WINDOW_S = 3.0  # each clip's speech is embedded in windows of this length, then averaged

Source = tuple[str | Path, float | None, float | None]


class Embedder(Protocol):
    @property
    def model_id(self) -> str: ...

    def embed(self, waveform_chunks: list[np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class Profile:
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
            centroid=centroid / max(float(np.linalg.norm(centroid)), 1e-12),
            model_id=str(data["embedding_model"]),
            n_clips=int(data["n_clips"]),
            sources=tuple(data.get("sources", ())),
        )


def validate_name(name: str) -> str:
    """A voice name is a folder name: letters, digits, space, `-`, `_` (no dots, slashes, or edge spaces)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise VoiceProfileError(
            f"invalid voice name {name!r}: use letters, digits, spaces, '-' or '_' (1-64 characters, "
            "starting with a letter or digit, not ending with a space)"
        )
    return name


def read_audio(path: str | Path, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Decode a media file (or the [start, end] seconds of it) to 16 kHz mono float32.

    soundfile reads WAV/FLAC/OGG; anything else (mp3, m4a, video files) goes through PyAV.
    """
    path = Path(path)
    if not path.is_file():
        raise VoiceProfileError(f"audio file not found: {path}")
    try:
        wav, sr = _decode_soundfile(path, start, end)
    except Exception as sf_error:  # not a format libsndfile reads: try ffmpeg's decoders
        log.debug("soundfile cannot read %s (%s); trying PyAV", path, sf_error)
        try:
            wav, sr = _decode_pyav(path, start, end)
        except Exception as e:
            raise VoiceProfileError(f"cannot decode audio {path}: {e}") from e
    if sr != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(sr, SAMPLE_RATE)
        wav = resample_poly(wav, SAMPLE_RATE // g, sr // g)
    return np.ascontiguousarray(wav, dtype=np.float32)


def _decode_soundfile(path: Path, start: float | None, end: float | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    sr = sf.info(str(path)).samplerate
    first = int((start or 0.0) * sr)
    last = int(end * sr) if end is not None else None
    wav, sr = sf.read(str(path), start=first, stop=last, dtype="float32", always_2d=True)
    return wav.mean(axis=1), sr


def _decode_pyav(path: Path, start: float | None, end: float | None) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        frames = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                frames.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            frames.append(out.to_ndarray().reshape(-1))
    wav = np.concatenate(frames) if frames else np.zeros(0, dtype=np.float32)
    first = int((start or 0.0) * SAMPLE_RATE)
    last = int(end * SAMPLE_RATE) if end is not None else None
    return wav[first:last], SAMPLE_RATE


def clip_embedding(wav: np.ndarray, embedder: Embedder, window_s: float = ENROLL_WINDOW_S) -> np.ndarray | None:
    """One unit vector for a clip: the mean of the embeddings of its speech, in windows (None: no speech)."""
    from chaffee_assets.lib.models.vad import speech_regions

    regions = speech_regions(wav)
    speech = np.concatenate([wav[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] for a, b in regions]) if regions else wav[:0]
    if speech.size < SAMPLE_RATE:  # under a second of speech
        return None
    step = int(window_s * SAMPLE_RATE)
    chunks = [speech[i : i + step] for i in range(0, speech.size, step)]
    if len(chunks) > 1 and chunks[-1].size < step // 2:
        chunks = chunks[:-1]
    mean = embedder.embed(chunks).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _profile_path(voices_dir: Path, name: str) -> Path:
    return Path(voices_dir) / validate_name(name) / PROFILE_FILE


def read_profile(path: Path) -> Profile:
    try:
        return Profile.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VoiceProfileError(f"unreadable voice profile {path}: {e}") from e


def enroll(name: str, sources: list[Source], voices_dir: str | Path, embedder: Embedder) -> Profile:
    """Create `voices_dir/<name>/profile.json`, or extend it with more clips (running mean).

    Each source is (audio file, start seconds or None, end seconds or None).
    """
    path = _profile_path(Path(voices_dir), name)
    if not sources:
        raise VoiceProfileError(f"enroll {name!r}: no audio sources given")
    existing = read_profile(path) if path.exists() else None
    if existing is not None and existing.model_id != embedder.model_id:
        raise VoiceProfileError(
            f"voice profile {name!r} was made with {existing.model_id!r}, not {embedder.model_id!r}: "
            f"delete {path.parent} and enroll it again with the current model"
        )
    embeddings, records = [], []
    for src, start, end in sources:
        emb = clip_embedding(read_audio(src, start, end), embedder)
        if emb is None:
            raise VoiceProfileError(f"enroll {name!r}: no speech (at least 1 s) in {src} [{start}, {end}]")
        embeddings.append(emb)
        records.append({"path": str(Path(src).resolve()), "start": start, "end": end})
    total = np.sum(embeddings, axis=0)
    n_old = existing.n_clips if existing else 0
    if existing is not None:
        total = total + existing.centroid * n_old
    centroid = total / (n_old + len(embeddings))
    profile = Profile(
        name=name,
        centroid=(centroid / max(float(np.linalg.norm(centroid)), 1e-12)).astype(np.float32),
        model_id=embedder.model_id,
        n_clips=n_old + len(embeddings),
        sources=(existing.sources if existing else ()) + tuple(records),
    )
    _write_atomic(path, json.dumps(profile.to_json(), indent=1))
    log.info("enrolled voice %r: %d new clips, %d in all (%s)", name, len(embeddings), profile.n_clips, path)
    return profile


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_profiles(voices_dir: str | Path, model_id: str, strict: bool = True) -> list[Profile]:
    """Every profile in `voices_dir`, sorted by name (see the module docstring for the policy)."""
    root = Path(voices_dir)
    if not root.is_dir():
        log.warning("voices folder %s not found: no enrolled voices", root)
        return []
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as e:
        log.warning("voices folder %s is not readable (%s): no enrolled voices", root, e)
        return []
    profiles = []
    for folder in folders:
        path = folder / PROFILE_FILE
        if not path.exists():
            continue
        try:
            profile = read_profile(path)
            if profile.model_id != model_id:
                raise VoiceProfileError(
                    f"voice profile {path} was made with {profile.model_id!r} but speakers are embedded "
                    f"with {model_id!r}: enroll {folder.name!r} again"
                )
        except VoiceProfileError as e:
            if strict:
                raise
            log.warning("skipping voice profile: %s", e)
            continue
        profiles.append(profile)
    log.info("loaded %d voice profiles from %s", len(profiles), root)
    return profiles
