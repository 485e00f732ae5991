"""A step's `lib.clock.StepClock` as asset metadata: what an operator reads to find the bottleneck
(seconds per model, load seconds, real-time factor) and the raw timeline benchmarks read."""

from __future__ import annotations

import time

import dagster as dg

from chaffee_assets.lib.clock import StepClock, process_started_at
from chaffee_assets.lib.stages import stage_pieces


def startup_seconds(clock: StepClock) -> float | None:
    """Seconds from when this step could start loading to its models being ready: from the worker
    process's start when they were built before the step (with the run's resources), else from the
    step's start. None when the step loaded nothing (models already warm in the process)."""
    ready = clock.model_ready_at()
    if ready is None:
        return None
    first = min(a for _, a, _ in clock.loads)
    origin = process_started_at() if first < clock.started_at else clock.started_at
    return max(0.0, ready - origin)


def timing_metadata(clock: StepClock, audio_seconds: float | None = None) -> dict[str, object]:
    s = clock.summary()
    out: dict[str, object] = {
        "inference_seconds": s["inference_seconds"],
        "model_load_seconds": s["model_load_seconds"],
        "models_loaded": dg.MetadataValue.json(s["models_loaded"]),
        "seconds_by_model": dg.MetadataValue.json({k: round(v, 3) for k, v in clock.seconds_by_model().items()}),
        "timeline": dg.MetadataValue.json(s["timeline"]),
    }
    startup = startup_seconds(clock)
    if startup is not None:
        out["startup_seconds"] = round(startup, 3)
    if audio_seconds:
        out["inference_rtf"] = round(s["inference_seconds"] / audio_seconds, 4)
    return out


def run_stage_metadata(context: dg.AssetExecutionContext) -> dict[str, object]:
    """Where this run's time went, in one place (the last step's metadata): seconds of each step so
    far (start to success, from the run's event log), the slowest, and the rest of the run's time
    (starting its process, waiting for a `gpu` slot)."""
    steps = step_seconds(context.instance, context.run_id)
    run = context.instance.get_run_record_by_id(context.run_id)
    if not steps or run is None or run.start_time is None:
        return {}
    elapsed = time.time() - run.start_time
    return {
        "run_stage_seconds": dg.MetadataValue.json({k: round(v, 2) for k, v in steps.items()}),
        "run_slowest_stage": max(steps, key=steps.__getitem__),
        "run_seconds": round(elapsed, 2),
        "run_waiting_seconds": round(max(0.0, elapsed - sum(steps.values())), 2),
    }


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds of each stage of the run, from its event log (`lib.stages.stage_pieces`: the
    `speech` step counts as transcript, diarization and speaker_labels)."""
    events = [
        (e.timestamp, e.dagster_event.event_type_value, e.dagster_event.step_key,
         e.dagster_event.asset_key.path[-1] if e.dagster_event.asset_key else None)
        for e in instance.all_logs(run_id) if e.dagster_event is not None and e.dagster_event.step_key is not None
    ]
    out: dict[str, float] = {}
    for stage, start, end in stage_pieces(events):
        out[stage] = out.get(stage, 0.0) + end - start
    return out
