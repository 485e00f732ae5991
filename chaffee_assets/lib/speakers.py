"""Speaker labels: diarization clusters get names, transcript words get the speaker of their turn.

`assign_words` and `name_speakers` are pure functions over plain data (unit-testable without any
model); `SpeakerNamer` adds the one model step, embedding a few turns per cluster.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from itertools import accumulate

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


def assign_words(words: Sequence[Word], turns: Sequence[Turn]) -> tuple[Word, ...]:
    """Each word takes the speaker of the turn it overlaps most.

    Ties (including no overlap at all) go to the nearest turn: the smallest gap between the word's
    midpoint and the turn, then the nearest turn centre. Without turns every speaker is None.

    O((words + turns) log turns): turns sorted by start with a running maximum of their ends, so
    a word looks only at the turns that can reach it (two bisections), never at all of them.
    """
    if not turns:
        return tuple(replace(w, speaker=None) for w in words)
    ordered = sorted(turns, key=lambda t: (t.start, t.end))
    ts = [t.start for t in ordered]
    te = [t.end for t in ordered]
    reach = list(accumulate(te, max))  # reach[j]: the latest end among turns 0..j
    out: list[Word] = []
    for w in words:
        mid = (w.start + w.end) / 2
        # turns that may overlap [start, end]: started before its end, and not all over before its start
        lo, hi = bisect_right(reach, w.start), bisect_left(ts, w.end)
        best, best_overlap, best_cost = -1, 0.0, math.inf
        for j in range(lo, hi):
            overlap = min(w.end, te[j]) - max(w.start, ts[j])
            if overlap <= 0.0:
                continue
            cost = _gap(mid, ts[j], te[j]) + 1e-6 * abs(mid - (ts[j] + te[j]) / 2)
            if overlap > best_overlap + 1e-9 or (overlap >= best_overlap - 1e-9 and cost < best_cost):
                if overlap > best_overlap + 1e-9:
                    best_overlap = overlap
                best, best_cost = j, cost
        if best < 0:
            best = _nearest(mid, ts, te, reach)
        out.append(replace(w, speaker=ordered[best].speaker))
    return tuple(out)


def _gap(mid: float, start: float, end: float) -> float:
    return max(0.0, start - mid, mid - end)


def _nearest(mid: float, ts: list[float], te: list[float], reach: list[float]) -> int:
    """The turn nearest to `mid` (none overlaps the word): one containing it (nearest centre
    first), else the latest-ending turn before it or the first one after it."""
    lo, hi = bisect_left(reach, mid), bisect_right(ts, mid)
    inside = [j for j in range(lo, hi) if te[j] >= mid]
    if inside:
        return min(inside, key=lambda j: abs(mid - (ts[j] + te[j]) / 2))
    cands = []
    if hi > 0:  # turns starting at or before mid all end before it: the latest end is the nearest
        cands.append(bisect_left(reach, reach[hi - 1], 0, hi))  # where the running maximum reached it
    if hi < len(ts):
        cands.append(hi)
    return min(cands, key=lambda j: (_gap(mid, ts[j], te[j]), abs(mid - (ts[j] + te[j]) / 2)))


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
    the mapping's order).

    The host: the single speaker of a monologue that matches no enrolled voice is `host`, unless
    the host is enrolled too (a profile named `host`): then the profile decides, like any voice's.
    """
    order = list(order) if order is not None else list(cluster_embeddings)
    order += [c for c in cluster_embeddings if c not in order]
    host_enrolled = any(p.name.casefold() == host.casefold() for p in profiles)
    if not profiles and monologue and len(order) == 1:
        return {order[0]: host}
    matches = best_matches(cluster_embeddings, profiles)
    names: dict[str, str] = {}
    guests = 0
    for cluster in order:
        name, sim = matches.get(cluster, (None, -1.0))
        if name is not None and sim >= threshold:
            names[cluster] = name
        elif monologue and len(order) == 1 and not host_enrolled:
            names[cluster] = host  # an un-enrolled host keeps his name when others are enrolled
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
