"""`transcript`, `diarization`, `speaker_labels`: the GPU steps of one video (pool `gpu`)."""


import time

import dagster as dg

from chaffee_assets.defs.assets.audio import PER_VIDEO
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.resources import AsrResource, SpeakerModelsResource
from chaffee_assets.defs.timing import timing_metadata
from chaffee_assets.lib.clock import model_call, step_clock
from chaffee_assets.lib.types import Audio, Diarization, SpeakerLabels, Transcript

COMMON = dict(partitions_def=videos, io_manager_key="artifacts", backfill_policy=PER_VIDEO, group_name="speech")


def gpu_priority(depth: int) -> dict[str, str]:
    """Op tags giving a `gpu` step a pool priority (added to its run's, see sensors.run_priority):
    among runs of one priority, steps further down the chain take a freed slot first, so a video
    that has started finishes and frees its run slot for the next one instead of every run in
    flight waiting on the pool at once (measured: model-busy 0.50 -> 0.64 with eager model loads)."""
    return {"dagster/priority": str(depth)}


@dg.asset(**COMMON, pool="gpu", op_tags=gpu_priority(1), kinds={"whisper", "python"}, code_version="transcript-v1")
def transcript(context: dg.AssetExecutionContext, asr: AsrResource, audio: Audio) -> Transcript:
    """faster-whisper, batched, with VAD and word timestamps."""
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
    context.add_output_metadata(
        {
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
        }
    )
    return result


# After `transcript` (an ordering, not an input): a run executes its steps one at a time, and two of
# its `gpu` steps waiting at once would both queue for a slot; the one given a slot while the other
# computes would hold it idle (measured: a slot held idle for the whole of a 9-minute pyannote step
# while three other runs waited for it).
@dg.asset(
    **COMMON, pool="gpu", deps=[transcript], op_tags=gpu_priority(1), kinds={"pyannote", "python"},
    code_version="diarization-v1",
)
def diarization(context: dg.AssetExecutionContext, speakers: SpeakerModelsResource, audio: Audio) -> Diarization:
    """Speaker turns; `auto` takes the monologue fast path when one voice is found."""
    with step_clock(uses=["ecapa"]) as clock:
        diarizer = speakers.diarizer()
        # what ECAPA and pyannote do not account for inside diarize() is silero's VAD
        with model_call("silero-vad"):
            result = diarizer.diarize(audio)
    if result.fast_path:
        context.log.info("video %s: Monologue fast-path detected", audio.meta.video_id)
    elif result.method == "pyannote":
        context.log.info("video %s: Running Pyannote diarization found %d speakers", audio.meta.video_id, result.speakers)
    context.add_output_metadata(
        {
            "method": result.method,
            "fast_path": result.fast_path,
            "speakers": result.speakers,
            "turns": len(result.turns),
            "seconds": round(result.seconds, 2),
            "monologue_score": round(result.monologue_score, 4) if result.monologue_score is not None else None,
            "pyannote_loaded": bool(getattr(diarizer, "pyannote_loaded", False)),
            **timing_metadata(clock, audio.seconds),
        }
    )
    return result


@dg.asset(**COMMON, pool="gpu", op_tags=gpu_priority(2), kinds={"speechbrain", "python"}, code_version="speaker-labels-v1")
def speaker_labels(
    context: dg.AssetExecutionContext,
    speakers: SpeakerModelsResource,
    audio: Audio,
    transcript: Transcript,
    diarization: Diarization,
) -> SpeakerLabels:
    """Turns named by ECAPA similarity to the voices enrolled in VOICES_DIR; unknown voices are Guest N."""
    t0 = time.perf_counter()
    with step_clock(uses=["ecapa"]) as clock:
        result = speakers.namer().label(audio, transcript, diarization)
    named = sorted(set(result.names.values()))
    context.log.info("video %s: speakers %s", audio.meta.video_id, ", ".join(named) or "none")
    context.add_output_metadata(
        {
            "speakers": dg.MetadataValue.json(result.names),
            "similarities": dg.MetadataValue.json({k: round(v, 3) for k, v in result.similarities.items()}),
            "words_labelled": sum(1 for w in result.words if w.speaker),
            "seconds": round(time.perf_counter() - t0, 2),
            **timing_metadata(clock, audio.seconds),
        }
    )
    return result
