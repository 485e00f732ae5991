"""Numbers for the operator, as flat asset metadata that Dagster plots across partitions: seconds and
real-time factor per model (measured inside the model service, returned with each answer), and
where a run's time went."""

from __future__ import annotations

import time
from collections.abc import Iterable

import dagster as dg

from chaffee_assets.lib.stages import stage_pieces
from chaffee_assets.lib.types import Served, StepEvent


def served_metadata(*answers: Served, audio_seconds: float | None = None) -> dict[str, object]:
    """`seconds_<model>` (and `rtf_<model>` when the audio's length is known) summed over the model
    service's answers, the total, and the replica that answered."""
    seconds: dict[str, float] = {}
    for a in answers:
        for model, s in a.seconds_by_model.items():
            seconds[model] = seconds.get(model, 0.0) + s
    out: dict[str, object] = {f"seconds_{_key(m)}": round(s, 3) for m, s in sorted(seconds.items())}
    out["inference_seconds"] = round(sum(seconds.values()), 3)
    if audio_seconds:
        out |= {f"rtf_{_key(m)}": round(s / audio_seconds, 4) for m, s in sorted(seconds.items())}
        out["inference_rtf"] = round(sum(seconds.values()) / audio_seconds, 4)
    replicas = sorted({a.replica for a in answers if a.replica})
    if replicas:
        out["service_replica"] = ", ".join(replicas)
    return out


def _key(model: str) -> str:
    return model.replace("-", "_").replace(".", "_")


def step_events(instance: dg.DagsterInstance, run_id: str) -> Iterable[StepEvent]:
    for e in instance.all_logs(run_id):
        ev = e.dagster_event
        if ev is not None and ev.step_key is not None:
            yield StepEvent(e.timestamp, ev.event_type_value, ev.step_key, ev.asset_key.path[-1] if ev.asset_key else None)


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds of each stage of the run, from its event log (`lib.stages.stage_pieces`: the
    `speech` step counts as transcript, diarization and speaker_labels)."""
    out: dict[str, float] = {}
    for stage, start, end in stage_pieces(step_events(instance, run_id)):
        out[stage] = out.get(stage, 0.0) + end - start
    return out


def run_stage_metadata(context: dg.AssetExecutionContext) -> dict[str, object]:
    """Where this video's run spent its time, on its last step (`db_rows`): seconds of each stage so
    far (flat, `run_seconds_<stage>`), and the rest of the run's time (starting its process,
    waiting for a `gpu` slot). Only for a run of one video: a batched step's run is no video's."""
    if len(context.partition_keys) != 1:
        return {}
    steps = step_seconds(context.instance, context.run_id)
    run = context.instance.get_run_record_by_id(context.run_id)
    if not steps or run is None or run.start_time is None:
        return {}
    elapsed = time.time() - run.start_time
    return {
        **{f"run_seconds_{stage}": round(s, 2) for stage, s in steps.items()},
        "run_seconds": round(elapsed, 2),
        "run_waiting_seconds": round(max(0.0, elapsed - sum(steps.values())), 2),
    }
