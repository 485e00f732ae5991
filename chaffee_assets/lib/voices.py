"""Enrolled voice profiles: `<voices_dir>/<Name>/profile.json`.

A profile is the L2-normalised running mean of ECAPA embeddings of a person's clips, with the id of
the embedding model that made it (a profile is only comparable with embeddings of the same model)
and the list of clips it was built from.

Loading policy: a missing voices folder gives [] (nothing enrolled yet: not a problem). A profile
made with another embedding model, or an unreadable profile.json, raises `VoiceProfileError` by
default (`strict=True`): naming every speaker "Guest" because the profiles went stale would be a
silent quality failure across the whole archive. `strict=False` skips such profiles with a warning.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Protocol

import numpy as np

from chaffee_assets.lib.errors import DecodeError, VoiceProfileError
from chaffee_assets.lib.files import atomic_write
from chaffee_assets.lib.types import SAMPLE_RATE, Profile
from chaffee_assets.lib.vectors import mean_direction, normalize

Clip = tuple[str | Path, float | None, float | None]  # an audio file, and the seconds of it to use

log = logging.getLogger(__name__)

PROFILE_FILE = "profile.json"
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9 _-]{0,62}[A-Za-z0-9_-])?$")
ENROLL_WINDOW_S = 3.0  # each clip's speech is embedded in windows of this length, then averaged

class Embedder(Protocol):
    @property
    def model_id(self) -> str: ...

    def embed(self, waveform_chunks: list[np.ndarray]) -> np.ndarray: ...


def validate_name(name: str) -> str:
    """A voice name is a folder name: letters, digits, space, `-`, `_` (no dots, slashes, or edge spaces)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise VoiceProfileError(
            f"invalid voice name {name!r}: use letters, digits, spaces, '-' or '_' (1-64 characters, "
            "starting with a letter or digit, not ending with a space)"
        )
    return name


def read_audio(path: str | Path, start: float | None = None, end: float | None = None) -> np.ndarray:
    """A media file (or the [start, end] seconds of it) as 16 kHz mono float32 (`media.decode`)."""
    from chaffee_assets.lib.media.decode import decode_to_16k_mono

    path = Path(path)
    if not path.is_file():
        raise VoiceProfileError(f"audio file not found: {path}")
    try:
        return decode_to_16k_mono(path, "voice-clip", start=start, end=end)
    except DecodeError as e:
        raise VoiceProfileError(f"cannot decode audio {path}: {e.cause}") from e


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
    return mean_direction(embedder.embed(chunks))


def _profile_path(voices_dir: Path, name: str) -> Path:
    return Path(voices_dir) / validate_name(name) / PROFILE_FILE


def read_profile(path: Path) -> Profile:
    try:
        return Profile.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VoiceProfileError(f"unreadable voice profile {path}: {e}") from e


def enroll(name: str, sources: list[Clip], voices_dir: str | Path, embedder: Embedder) -> Profile:
    """Create `voices_dir/<name>/profile.json`, or extend it with more clips (running mean).

    Each source is (audio file, start seconds or None, end seconds or None). `embedder` embeds
    waveform chunks (`embed`), or whole clips (`clip_vector`: the model service's client does).
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
        wav = read_audio(src, start, end)
        emb = embedder.clip_vector(wav) if hasattr(embedder, "clip_vector") else clip_embedding(wav, embedder)
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
        centroid=normalize(centroid),
        model_id=embedder.model_id,
        n_clips=n_old + len(embeddings),
        sources=(existing.sources if existing else ()) + tuple(records),
    )
    atomic_write(path, json.dumps(profile.to_json(), indent=1).encode())
    log.info("enrolled voice %r: %d new clips, %d in all (%s)", name, len(embeddings), profile.n_clips, path)
    return profile


def load_profiles(voices_dir: str | Path, model_id: str, strict: bool = True) -> list[Profile]:
    """Every profile in `voices_dir`, sorted by name (see the module docstring for the policy)."""
    root = Path(voices_dir)
    if not root.is_dir():
        log.info("voices folder %s not found: no enrolled voices", root)
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
