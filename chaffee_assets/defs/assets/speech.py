"""`transcript`, `diarization`, `speaker_labels`: the speech of one video, computed in one `gpu` step.

The three are separate assets (their own metadata, code versions and history in the UI; any one
can be materialised alone) made by one op, `speech`, so that a video claims a `gpu` slot once for
all three (bench/README.md, "Tuning log"). The models are the model service's: the step sends the
video's `AudioRef` (a reference to its stored waveform and its speech regions) and gets the
contracts back. Naming is plain Python here: the service gives each cluster's voice, the step
compares them with the voices enrolled in VOICES_DIR. When only some of the three are selected,
the others are read back from the artifact store, as their own steps would have loaded them.
"""

from collections.abc import Iterator

import dagster as dg

from chaffee_assets.defs import checks
from chaffee_assets.defs.assets.audio import restore_audio
from chaffee_assets.defs.io import ArtifactIOManager
from chaffee_assets.defs.metadata import served_metadata
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.policies import RETRY, failing_clearly
from chaffee_assets.defs.resources import (
    ArchiveResource,
    DownloaderResource,
    ModelServiceResource,
    SpeechOptionsResource,
)
from chaffee_assets.lib import checks as lib_checks
from chaffee_assets.lib.types import AudioRef, Diarization, MonologueCheck, SpeakerLabels, Transcript


def gpu_priority(depth: int) -> dict[str, str]:
    """Op tags giving a `gpu` step a pool priority (added to its run's, see sensors.run_priority):
    among runs of one priority, steps further down the chain take a freed slot first, so a video
    that has started finishes and frees its run slot for the next one instead of every run in
    flight waiting on the pool at once (measured: model-busy 0.50 -> 0.64 with eager model loads)."""
    return {"dagster/priority": str(depth)}


def _out(tp: type, kind: str, version: str, description: str) -> dg.AssetOut:
    return dg.AssetOut(
        dagster_type=tp, io_manager_key="artifacts", group_name="speech", kinds={kind, "python"}, code_version=version,
        description=description, is_required=False,
    )


def transcribe(context: dg.AssetExecutionContext, models: ModelServiceResource, options: SpeechOptionsResource,
               audio: AudioRef) -> dg.Output:
    served = models.call("transcribe", audio, options.asr_options(), about=f"video {audio.video_id}")
    result: Transcript = served.value
    info = result.info
    if not result.words:
        context.log.warning("video %s: no speech found (empty transcript)", audio.video_id)
    context.log.info("video %s: %d words in %.1f s of audio, %.1f s (%s on %s)", audio.video_id, len(result.words),
                     info.audio_seconds, info.processing_seconds, info.model, info.device)
    return dg.Output(result, output_name="transcript", metadata={
        "audio_seconds": round(info.audio_seconds, 2),
        "model": info.model,
        "device": info.device,
        "batch_size": info.batch_size,
        "language": info.language,
        "language_probability": round(info.language_probability, 3),
        "words": len(result.words),
        "words_per_minute": round(60 * len(result.words) / audio.speech_seconds, 1) if audio.speech_seconds else 0.0,
        "empty": not result.words,
        "multilingual": info.multilingual,
        "segments": info.segments,
        "redecoded_segments": info.redecoded_segments,
        "dropped_segments": info.dropped_segments,
        "dropped_seconds": round(info.dropped_seconds, 1),
        "language_checked_windows": info.language_checked,
        "other_languages": ", ".join(f"{lang} at {a:.0f} s ({p:.2f})" for a, lang, p in info.other_languages) or "none",
        **served_metadata(served, audio_seconds=audio.seconds),
    })


def monologue_metadata(check: MonologueCheck | None) -> dict:
    """The monologue check's measurements, so a wrong decision can be read off the asset."""
    if check is None:
        return {}
    return {
        "monologue_decision": check.decision,
        "monologue_speech_seconds": round(check.speech_seconds, 1),
        "monologue_needed_seconds": round(check.needed_seconds, 2),
        "monologue_foreign_seconds": round(check.foreign_seconds, 2),
        "monologue_overlap_seconds": None if check.overlap_seconds is None else round(check.overlap_seconds, 2),
        "monologue_lowest_similarity": check.lowest_similarity,
        "monologue_cluster_seconds": round(check.cluster_seconds, 2),
        "monologue_cluster_similarity": check.cluster_similarity,
        "monologue_windows": check.windows,
        "monologue_check_seconds": round(check.seconds, 2),
    }


def diarize(context: dg.AssetExecutionContext, models: ModelServiceResource, options: SpeechOptionsResource,
            audio: AudioRef) -> dg.Output:
    served = models.call("diarize", audio, options.diarization_options(), about=f"video {audio.video_id}")
    result: Diarization = served.value
    if result.fast_path:
        context.log.info("video %s: Monologue fast-path detected", audio.video_id)
    elif result.method == "pyannote":
        context.log.info("video %s: Running Pyannote diarization found %d speakers", audio.video_id, result.speakers)
    return dg.Output(result, output_name="diarization", metadata={
        "method": result.method,
        "fast_path": result.fast_path,
        "speakers": result.speakers,
        "turns": len(result.turns),
        "monologue_score": round(result.monologue_score, 4) if result.monologue_score is not None else None,
        **monologue_metadata(result.check),
        **served_metadata(served, audio_seconds=audio.seconds),
    })


def name_speakers(context: dg.AssetExecutionContext, models: ModelServiceResource, options: SpeechOptionsResource,
                  audio: AudioRef, transcript: Transcript, diarization: Diarization) -> dg.Output:
    from chaffee_assets.lib.models.ecapa import ECAPA_MODEL_ID
    from chaffee_assets.lib.speakers import label_speakers, needs_embeddings

    profiles = options.profiles(ECAPA_MODEL_ID)
    answers = []
    embeddings: dict = {}
    if needs_embeddings(profiles, diarization):
        served = models.call("cluster_embeddings", audio, diarization.turns, about=f"video {audio.video_id}")
        answers.append(served)
        embeddings = served.value
    result = label_speakers(transcript, diarization, embeddings, profiles, options.voice_threshold, options.host_speaker)
    named = sorted(set(result.names.values()))
    context.log.info("video %s: speakers %s", audio.video_id, ", ".join(named) or "none")
    return dg.Output(result, output_name="speaker_labels", metadata={
        "speakers": ", ".join(named),
        "speaker_count": len(named),
        "similarities": dg.MetadataValue.json({k: round(v, 3) for k, v in result.similarities.items()}),
        "words_labelled": sum(1 for w in result.words if w.speaker),
        "voices_enrolled": len(profiles),
        **served_metadata(*answers, audio_seconds=audio.seconds),
    })


@dg.multi_asset(
    name="speech",
    outs={
        "transcript": _out(Transcript, "whisper", "transcript-v4", "faster-whisper, batched, on the video's speech regions, with word "
                           "timestamps; segments failing the decoding guard (loops, low confidence) decoded again or left out; an "
                           "English-only model's windows checked for other languages."),
        "diarization": _out(Diarization, "pyannote", "diarization-v3", "Speaker turns; `hybrid` (default) and `auto` take the monologue "
                            "fast path when the check hears no second voice (its measurements are in the metadata)."),
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
    pool="gpu",
    op_tags=gpu_priority(1),
    retry_policy=RETRY,
    check_specs=checks.specs(checks.TRANSCRIPT_PLAUSIBLE, checks.TRANSCRIPT_TRUSTED, checks.DIARIZATION_COVERS),
)
def speech(
    context: dg.AssetExecutionContext,
    models: ModelServiceResource,
    speech_options: SpeechOptionsResource,
    artifacts: dg.ResourceParam[ArtifactIOManager],
    archive: ArchiveResource,
    downloader: DownloaderResource,
    audio: AudioRef,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Whisper, then the speaker turns, then their names: the selected ones of the three assets."""
    with failing_clearly(context):
        restore_audio(context, archive, downloader, artifacts, audio)  # AUDIO_RETENTION=drop removed it
        yield from _speech(context, models, speech_options, artifacts, audio)


def _speech(context, models, speech_options, artifacts, audio: AudioRef) -> Iterator[dg.Output | dg.AssetCheckResult]:
    selected = set(context.selected_output_names)
    transcript = diarization = None
    if "transcript" in selected:
        out = transcribe(context, models, speech_options, audio)
        transcript = out.value
        yield out
        found = lib_checks.transcript_plausible(transcript, audio.speech)
        yield from checks.results(context, checks.TRANSCRIPT_PLAUSIBLE, {audio.video_id: found})
        yield from checks.results(context, checks.TRANSCRIPT_TRUSTED, {audio.video_id: lib_checks.transcript_trusted(transcript, audio.speech)})
    if "diarization" in selected:
        out = diarize(context, models, speech_options, audio)
        diarization = out.value
        yield out
        found = lib_checks.diarization_covers(diarization, audio.speech)
        yield from checks.results(context, checks.DIARIZATION_COVERS, {audio.video_id: found})
    if "speaker_labels" in selected:
        store, video_id = artifacts.store, context.partition_key
        if transcript is None:
            transcript = store.load("transcript", video_id, Transcript)
        if diarization is None:
            diarization = store.load("diarization", video_id, Diarization)
        yield name_speakers(context, models, speech_options, audio, transcript, diarization)
