"""Speaker labels: diarization clusters get names, transcript words get the speaker of their turn.

`assign_words` and `name_speakers` are pure functions over plain data (unit-testable without any
model); `SpeakerNamer` adds the one model step, embedding a few turns per cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from chaffee_assets.lib.types import (
    SAMPLE_RATE,
    Audio,
    Diarization,
    Profile,
    SpeakerLabels,
    Transcript,
    Turn,
    Word,
)
from chaffee_assets.lib.vectors import mean_direction
from chaffee_assets.lib.voices import Embedder

log = logging.getLogger(__name__)

GUEST = "Guest"
_BLOCK = 512  # words compared with all turns at once


def assign_words(words: Sequence[Word], turns: Sequence[Turn]) -> tuple[Word, ...]:
    """Each word takes the speaker of the turn it overlaps most.

    Ties (including no overlap at all) go to the nearest turn: the smallest gap between the word's
    midpoint and the turn, then the nearest turn centre. Without turns every speaker is None.
    """
    if not turns:
        return tuple(replace(w, speaker=None) for w in words)
    ts = np.array([t.start for t in turns], dtype=float)
    te = np.array([t.end for t in turns], dtype=float)
    tc = (ts + te) / 2
    out: list[Word] = []
    for b in range(0, len(words), _BLOCK):
        block = words[b : b + _BLOCK]
        ws = np.array([w.start for w in block], dtype=float)[:, None]
        we = np.array([w.end for w in block], dtype=float)[:, None]
        mid = (ws + we) / 2
        overlap = np.maximum(0.0, np.minimum(we, te) - np.maximum(ws, ts))
        gap = np.maximum(0.0, np.maximum(ts - mid, mid - te))
        tied = overlap >= overlap.max(axis=1, keepdims=True) - 1e-9
        cost = np.where(tied, gap + 1e-6 * np.abs(mid - tc), np.inf)
        best = np.argmin(cost, axis=1)
        out += [replace(w, speaker=turns[i].speaker) for w, i in zip(block, best, strict=True)]
    return tuple(out)


def first_appearance(turns: Sequence[Turn]) -> list[str]:
    """Cluster labels in the order they first speak."""
    seen: dict[str, None] = {}
    for t in sorted(turns, key=lambda t: (t.start, t.end)):
        seen.setdefault(t.speaker, None)
    return list(seen)


def best_matches(cluster_embeddings: Mapping[str, np.ndarray], profiles: Sequence[Profile]) -> dict[str, tuple[str, float]]:
    """cluster -> (closest profile's name, its cosine similarity); {} without profiles.

    A cluster's embedding is one vector or several rows (one per turn), averaged.
    """
    if not profiles:
        return {}
    centroids = np.stack([mean_direction(p.centroid) for p in profiles])
    out = {}
    for cluster, emb in cluster_embeddings.items():
        sims = centroids @ mean_direction(emb)
        i = int(np.argmax(sims))
        out[cluster] = (profiles[i].name, float(sims[i]))
    return out


def name_speakers(
    cluster_embeddings: Mapping[str, np.ndarray],
    profiles: Sequence[Profile],
    threshold: float,
    host: str,
    *,
    monologue: bool = False,
    order: Sequence[str] | None = None,
) -> dict[str, str]:
    """cluster -> name.

    A cluster whose embedding is at least `threshold` cosine-similar to a profile takes the closest
    profile's name (several clusters may take one name: an over-split speaker). The others are
    "Guest 1", "Guest 2"… numbered in `order` (the order of first appearance in the video; default:
    the mapping's order). With no profiles enrolled, the single speaker of a monologue is `host`.
    """
    order = list(order) if order is not None else list(cluster_embeddings)
    order += [c for c in cluster_embeddings if c not in order]
    if not profiles and monologue and len(order) == 1:
        return {order[0]: host}
    matches = best_matches(cluster_embeddings, profiles)
    names: dict[str, str] = {}
    guests = 0
    for cluster in order:
        name, sim = matches.get(cluster, (None, -1.0))
        if name is not None and sim >= threshold:
            names[cluster] = name
        else:
            guests += 1
            names[cluster] = f"{GUEST} {guests}"
    return names


def turns_for_embedding(turns: Sequence[Turn], max_turns: int, max_seconds: float, min_seconds: float) -> list[Turn]:
    """The longest turns (at most `max_turns`), each cut to its central `max_seconds`."""
    longest = sorted(turns, key=lambda t: t.end - t.start, reverse=True)[:max_turns]
    picked = []
    for t in longest:
        if t.end - t.start < min_seconds and picked:
            break
        if t.end - t.start > max_seconds:
            mid = (t.start + t.end) / 2
            t = Turn(mid - max_seconds / 2, mid + max_seconds / 2, t.speaker)
        picked.append(t)
    return picked


class SpeakerNamer:
    """Names the clusters of a diarization and tags the transcript's words with them."""

    def __init__(
        self,
        embedder: Embedder,
        profiles: Sequence[Profile],
        threshold: float,
        host: str,
        max_turns_per_cluster: int = 5,
        max_turn_seconds: float = 10.0,
        min_turn_seconds: float = 1.0,
    ):
        self.embedder = embedder
        self.profiles = list(profiles)
        self.threshold = threshold
        self.host = host
        self.max_turns = max_turns_per_cluster
        self.max_seconds = max_turn_seconds
        self.min_seconds = min_turn_seconds

    def label(self, audio: Audio, transcript: Transcript, diarization: Diarization) -> SpeakerLabels:
        order = first_appearance(diarization.turns)
        embeddings = {} if not needs_embeddings(self.profiles, diarization) else cluster_embeddings(
            audio.waveform, diarization.turns, self.embedder.embed, self.max_turns, self.max_seconds, self.min_seconds
        )
        return label_speakers(transcript, diarization, embeddings, self.profiles, self.threshold, self.host, order)


def needs_embeddings(profiles: Sequence[Profile], diarization: Diarization) -> bool:
    """Whether naming needs the clusters' voices: not for a monologue with no voice enrolled (the
    host), nor for a diarization without turns."""
    order = first_appearance(diarization.turns)
    return bool(order) and not (not profiles and _is_monologue(diarization, order))


def _is_monologue(diarization: Diarization, order: Sequence[str]) -> bool:
    return diarization.fast_path or diarization.method == "off" or len(order) == 1


def label_speakers(
    transcript: Transcript,
    diarization: Diarization,
    embeddings: Mapping[str, np.ndarray],
    profiles: Sequence[Profile],
    threshold: float,
    host: str,
    order: Sequence[str] | None = None,
) -> SpeakerLabels:
    """The naming itself, a pure function: clusters named from their embeddings (`name_speakers`),
    the transcript's words tagged with the speaker of their turn (`assign_words`)."""
    turns = diarization.turns
    order = list(order) if order is not None else first_appearance(turns)
    monologue = _is_monologue(diarization, order) if order else False
    if not order:
        names, sims = {}, {}
    elif not profiles and monologue and len(order) == 1:
        names, sims = {order[0]: host}, {}
    else:
        names = name_speakers(embeddings, profiles, threshold, host, monologue=monologue, order=order)
        sims = {c: s for c, (_, s) in best_matches(embeddings, profiles).items()}
    named = tuple(Turn(t.start, t.end, names[t.speaker]) for t in turns)
    words = assign_words(transcript.words, named)
    log.debug(
        "video %s: speakers %s", transcript.video_id,
        ", ".join(f"{c}={n}" + (f" ({sims[c]:.2f})" if c in sims else "") for c, n in names.items()) or "none",
    )
    return SpeakerLabels(transcript.video_id, named, words, names, sims)


def cluster_embeddings(
    wav: np.ndarray,
    turns: Sequence[Turn],
    embed: Callable[[list[np.ndarray]], np.ndarray],
    max_turns: int = 5,
    max_seconds: float = 10.0,
    min_seconds: float = 1.0,
) -> dict[str, np.ndarray]:
    """cluster -> (k, dim) embeddings of up to `max_turns` of its longest turns (one `embed` call)."""
    order = first_appearance(turns)
    chunks, owners = [], []
    for cluster in order:
        mine = [t for t in turns if t.speaker == cluster]
        for t in turns_for_embedding(mine, max_turns, max_seconds, min_seconds):
            chunk = wav[max(0, int(t.start * SAMPLE_RATE)) : int(t.end * SAMPLE_RATE)]
            if chunk.size:
                chunks.append(chunk)
                owners.append(cluster)
    emb = embed(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
    out = {}
    for cluster in order:
        rows = [i for i, o in enumerate(owners) if o == cluster]
        if rows:
            out[cluster] = emb[rows]
    return out
