"""A run's time per stage, from its step events.

A step that makes one asset is one stage, named after the asset. A step that makes several (the
`speech` op: transcript, diarization, speaker_labels) is split at its materialisations: each asset
takes the time since the step's start or the previous materialisation, and the last one also the
step's tail. A step that materialised nothing, or the part of a step after which it failed, is a
stage named after the step. Used by `chaffee ingest`'s progress, the `run_stage_seconds` metadata
and the benchmark's timeline.
"""

from __future__ import annotations

from collections.abc import Iterable

from chaffee_assets.lib.types import StepEvent

# (timestamp, event type, step key, asset name or None): the fields of Dagster's step events


def stage_pieces(events: Iterable[StepEvent]) -> list[tuple[str, float, float]]:
    """(stage, start, end) for each stretch of a step, in event order. A step over several
    partitions of one asset gives that asset several consecutive pieces."""
    mark: dict[str, float] = {}  # step -> start of its current stage
    last: dict[str, str] = {}  # step -> the asset it materialised last
    out: list[tuple[str, float, float]] = []
    for t, kind, step, asset in events:
        if kind == "STEP_START":
            mark[step] = t
        elif kind == "ASSET_MATERIALIZATION" and step in mark and asset:
            out.append((asset, mark[step], t))
            mark[step], last[step] = t, asset
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step in mark:
            # a failure's tail is the work that failed, not the asset stored before it
            stage = last.get(step, step) if kind == "STEP_SUCCESS" else step
            out.append((stage, mark.pop(step), t))
    return out
