"""`transcript`, `diarization`, `speaker_labels`: the speech of one video, computed in one `gpu` step.

The three are separate assets (their own metadata, code versions and history in the UI; any one
can be materialised alone) made by one op, `speech`, so that a video claims a `gpu` slot once for
all three: the audio is loaded once, and the per-step framing (start and success events, input
loads, the slot's claim poll and hand-off: about 0.6 s per step on the benchmark's 2 cores) is paid
once instead of three times (bench/README.md, "Tuning log"). When only some are selected, the
others are read back from the artifact store, as their own steps would have loaded them.
"""

import time
from collections.abc import Iterator

import dagster as dg

from chaffee_assets.defs.assets.audio import PER_VIDEO
from chaffee_assets.defs.metadata import timing_metadata
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.resources import ArtifactStoreResource, AsrResource, SpeakerModelsResource
from chaffee_assets.lib.clock import model_call, step_clock
from chaffee_assets.lib.types import Audio, Diarization, SpeakerLabels, Transcript


def gpu_priority(depth: int) -> dict[str, str]:
    """Op tags giving a `gpu` step a pool priority (added to its run's, see sensors.run_priority):
    among runs of one priority, steps further down the chain take a freed slot first, so a video
    that has started finishes and frees its run slot for the next one instead of every run in
    flight waiting on the pool at once (measured: model-busy 0.50 -> 0.64 with eager model loads)."""
    return {"dagster/priority": str(depth)}


def _out(tp: type, kind: str, version: str, description: str) -> dg.AssetOut:
    return dg.AssetOut(
        dagster_type=tp, io_manager_key="artifacts", group_name="speech", kinds={kind, "python"}, code_version=version,
        description=description, is_required=False, backfill_policy=PER_VIDEO,
    )


def transcribe(context: dg.AssetExecutionContext, asr: AsrResource, audio: Audio) -> dg.Output:
    with step_clock(uses=["whisper"]) as clock:
        transcriber = asr.transcriber  # built when the run's resources were (its load is in `clock`)
        with model_call("whisper"):
            result = transcriber.transcribe(audio)
    info = result.info
    rtf = info.processing_seconds / info.audio_seconds if info.audio_seconds else 0.0
    if not result.words:
        context.log.warning("video %s: no speech found (empty transcript)", audio.meta.video_id)
    context.log.info(
        "video %s: %d words in %.1f s of audio, %.1f s (RTF %.3f, %s on %s)",
        audio.meta.video_id, len(result.words), info.audio_seconds, info.processing_seconds, rtf, info.model, info.device,
    )
    return dg.Output(result, output_name="transcript", metadata={
        "audio_seconds": round(info.audio_seconds, 2),
        "processing_seconds": round(info.processing_seconds, 2),
        "real_time_factor": round(rtf, 4),
        "model": info.model,
        "device": info.device,
        "batch_size": info.batch_size,
        "language": info.language,
        "language_probability": round(info.language_probability, 3),
        "words": len(result.words),
        "empty": not result.words,
        **timing_metadata(clock, audio.seconds),
    })


def diarize(context: dg.AssetExecutionContext, speakers: SpeakerModelsResource, audio: Audio) -> dg.Output:
    with step_clock(uses=["ecapa"]) as clock:
        diarizer = speakers.diarizer()
        # what ECAPA and pyannote do not account for inside diarize() is silero's VAD
        with model_call("silero-vad"):
            result = diarizer.diarize(audio)
    if result.fast_path:
        context.log.info("video %s: Monologue fast-path detected", audio.meta.video_id)
    elif result.method == "pyannote":
        context.log.info("video %s: Running Pyannote diarization found %d speakers", audio.meta.video_id, result.speakers)
    return dg.Output(result, output_name="diarization", metadata={
        "method": result.method,
        "fast_path": result.fast_path,
        "speakers": result.speakers,
        "turns": len(result.turns),
        "seconds": round(result.seconds, 2),
        "monologue_score": round(result.monologue_score, 4) if result.monologue_score is not None else None,
        "pyannote_loaded": bool(getattr(diarizer, "pyannote_loaded", False)),
        **timing_metadata(clock, audio.seconds),
    })


def name_speakers(
    context: dg.AssetExecutionContext, speakers: SpeakerModelsResource, audio: Audio, transcript: Transcript,
    diarization: Diarization,
) -> dg.Output:
    t0 = time.perf_counter()
    with step_clock(uses=["ecapa"]) as clock:
        result = speakers.namer().label(audio, transcript, diarization)
    named = sorted(set(result.names.values()))
    context.log.info("video %s: speakers %s", audio.meta.video_id, ", ".join(named) or "none")
    return dg.Output(result, output_name="speaker_labels", metadata={
        "speakers": dg.MetadataValue.json(result.names),
        "similarities": dg.MetadataValue.json({k: round(v, 3) for k, v in result.similarities.items()}),
        "words_labelled": sum(1 for w in result.words if w.speaker),
        "seconds": round(time.perf_counter() - t0, 2),
        **timing_metadata(clock, audio.seconds),
    })


@dg.multi_asset(
    name="speech",
    outs={
        "transcript": _out(Transcript, "whisper", "transcript-v1", "faster-whisper, batched, with VAD and word timestamps."),
        "diarization": _out(Diarization, "pyannote", "diarization-v1", "Speaker turns; `auto` takes the monologue fast path when one voice is found."),
        "speaker_labels": _out(
            SpeakerLabels, "speechbrain", "speaker-labels-v1",
            "Turns named by ECAPA similarity to the voices enrolled in VOICES_DIR; unknown voices are Guest N.",
        ),
    },
    internal_asset_deps={
        "transcript": {dg.AssetKey("audio")},
        "diarization": {dg.AssetKey("audio")},
        "speaker_labels": {dg.AssetKey("audio"), dg.AssetKey("transcript"), dg.AssetKey("diarization")},
    },
    can_subset=True,
    partitions_def=videos,
    backfill_policy=PER_VIDEO,
    pool="gpu",
    op_tags=gpu_priority(1),
)
def speech(
    context: dg.AssetExecutionContext,
    asr: AsrResource,
    speakers: SpeakerModelsResource,
    artifact_store: ArtifactStoreResource,
    audio: Audio,
) -> Iterator[dg.Output]:
    """Whisper, then the speaker turns, then their names: the selected ones of the three assets."""
    selected = set(context.selected_output_names)
    transcript = diarization = None
    if "transcript" in selected:
        out = transcribe(context, asr, audio)
        transcript = out.value
        yield out
    if "diarization" in selected:
        out = diarize(context, speakers, audio)
        diarization = out.value
        yield out
    if "speaker_labels" in selected:
        store, video_id = artifact_store.store, context.partition_key
        if transcript is None:
            transcript = store.load("transcript", video_id, Transcript)
        if diarization is None:
            diarization = store.load("diarization", video_id, Diarization)
        yield name_speakers(context, speakers, audio, transcript, diarization)
