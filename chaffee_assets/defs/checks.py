"""The stages' asset checks (`lib.checks`), evaluated in the step that makes the asset, on the
output it has in hand (no artifact read twice), partitioned like the asset: the UI's Checks tab
shows each video's result, `chaffee status` the failing ones.

A blocking check that fails stops the video there: its output is kept (to look at), the step
fails with the check's finding as its cause, not retried, and nothing downstream runs. A step over
many videos (a re-embed) reports one result over its videos, naming those that failed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from chaffee_assets.defs.partitions import videos
from chaffee_assets.lib.types import Check


@dataclass(frozen=True)
class CheckDef:
    asset: str
    name: str
    description: str
    blocking: bool = True
    warn_only: bool = False  # a failure is a warning (WARN severity), never blocking

    @property
    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(self.name, asset=self.asset, description=self.description,
                                 blocking=self.blocking and not self.warn_only, partitions_def=videos)


AUDIO_DURATION = CheckDef("audio", "duration", "Decoded audio is not empty and matches the listed duration (2 s or 2 %).")
TRANSCRIPT_PLAUSIBLE = CheckDef(
    "transcript", "plausible",
    "Words where VAD found speech, a human rate (40-320 words per minute of speech), no phrase looping 8 times.",
)
TRANSCRIPT_TRUSTED = CheckDef(
    "transcript", "trusted",
    "Under 10 % of the speech dropped by the decoding guard (repetition loops, low log-probability, text over "
    "non-speech: decoded twice, then left out of the archive); a confident language.",
    warn_only=True,
)
DIARIZATION_COVERS = CheckDef("diarization", "covers_speech", "At least one speaker, turns covering half of the speech or more.",
                              blocking=False)
PASSAGES_BOUNDED = CheckDef("segments", "bounded", "Every word in a passage, passages within PASSAGE_MAX_SECONDS.")
VECTORS_VALID = CheckDef("embeddings", "valid", "One vector per passage, the model's dimension, finite, unit length.")
ROWS_MATCH = CheckDef("db_rows", "rows_match", "The archive holds one segment and one vector per passage for the video.",
                      blocking=False)
MODEL_COVERS = CheckDef("db_rows", "model_covers_archive",
                        "Every stored video has vectors of the configured model (a warning while a re-embed is under way).",
                        warn_only=True)


def results(context: dg.AssetExecutionContext, check: CheckDef, per_video: Mapping[str, Check]) -> Iterator[dg.AssetCheckResult]:
    """The check's result over the step's videos, if the step was asked for it (a launch may leave
    checks out); a failed blocking check raises after it, naming the cause, so the run fails with it
    (and Dagster does not retry it)."""
    if not selected(context, check):
        return
    failed = {v: c for v, c in sorted(per_video.items()) if not c.passed}
    if len(per_video) == 1:
        ((video, only),) = per_video.items()
        description, metadata = only.description, dict(only.metadata)
    else:
        description = "; ".join(f"{v}: {c.description}" for v, c in list(failed.items())[:5]) or f"{len(per_video)} videos passed"
        metadata = {"videos": len(per_video), "videos_failed": len(failed), "failed": ", ".join(failed)[:1000]}
    severity = dg.AssetCheckSeverity.WARN if check.warn_only else dg.AssetCheckSeverity.ERROR
    yield dg.AssetCheckResult(asset_key=check.asset, check_name=check.name, passed=not failed, severity=severity,
                              description=description, metadata=metadata)
    if failed and check.blocking and not check.warn_only:
        raise dg.Failure(description=f"check {check.asset}/{check.name} failed: {description}", allow_retries=False)


def specs(*checks: CheckDef) -> list[dg.AssetCheckSpec]:
    return [c.spec for c in checks]


def selected(context: dg.AssetExecutionContext, check: CheckDef) -> bool:
    """Whether the step was asked for the check (a subset may leave it out)."""
    key = dg.AssetCheckKey(dg.AssetKey(check.asset), check.name)
    return key in context.selected_asset_check_keys


def failing(instance: dg.DagsterInstance, checks: tuple[CheckDef, ...]) -> dict[str, list[str]]:
    """video -> the checks whose latest evaluation failed for it ("asset/name")."""
    keys = [dg.AssetCheckKey(dg.AssetKey(c.asset), c.name) for c in checks]
    out: dict[str, list[str]] = {}
    for info in instance.event_log_storage.get_asset_check_partition_info(keys):
        if info.partition_key and str(info.latest_execution_status.value) == "FAILED":
            out.setdefault(info.partition_key, []).append(f"{info.check_key.asset_key.path[-1]}/{info.check_key.name}")
    return out


ALL_CHECKS = (AUDIO_DURATION, TRANSCRIPT_PLAUSIBLE, TRANSCRIPT_TRUSTED, DIARIZATION_COVERS, PASSAGES_BOUNDED, VECTORS_VALID, ROWS_MATCH, MODEL_COVERS)


def channel_freshness(quiet_days: float) -> Sequence[dg.AssetChecksDefinition]:
    """`audio`'s freshness: failed when no video has been downloaded for `quiet_days` (the sensor's
    ticks are green on a channel that is quiet and red on one that cannot be listed; this catches
    the channel that lists fine but has stopped publishing, or a sensor left off)."""
    # Dagster prefers a FreshnessPolicy on the asset now (a preview, evaluated by a daemon of its
    # own); the check, run by the `channel_freshness` sensor, works on every instance today
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
        return dg.build_last_update_freshness_checks(assets=["audio"], lower_bound_delta=timedelta(days=quiet_days))


def freshness_sensor(freshness: Sequence[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    with warnings.catch_warnings():  # superseded like the checks above
        warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=freshness, name="channel_freshness", minimum_interval_seconds=3600,
            default_status=dg.DefaultSensorStatus.STOPPED,
        )
