"""`segments`, `embeddings`, `db_rows`: passages, their vectors and the video's rows in the archive.

The text embedder is the model service's: a video's passages are embedded in the service's batches
together with those of the other videos in flight (server-side batching), and a step over many
videos (a re-embed, a large backfill) sends them all without loading anything."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from chaffee_assets.archive import writer
from chaffee_assets.defs import checks
from chaffee_assets.defs.assets.speech import gpu_priority
from chaffee_assets.defs.io import ALLOW_MISSING, ArtifactIOManager
from chaffee_assets.defs.metadata import run_stage_metadata, served_metadata
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.policies import RETRY, failing_clearly
from chaffee_assets.defs.resources import ArchiveResource, ModelServiceResource, PassageResource
from chaffee_assets.lib import checks as lib_checks
from chaffee_assets.lib.errors import ModelNotFound
from chaffee_assets.lib.models.registry import embedding_model_id
from chaffee_assets.lib.passages import build_passages
from chaffee_assets.lib.types import AudioRef, Check, PassageOptions, Passages, PassageVectors, SpeakerLabels

# No backfill policy on any asset: a backfill runs each video's whole chain in one run (tagged with
# its partition, so each video's checks are its own), and a video is searchable as soon as its own
# speech is done, whatever the backfill's size (bench/README.md, "Search fills as a backfill runs");
# the model service batches the passages of every video in flight together. `chaffee reembed` runs
# these two over ranges of videos, one step embedding many.
CALLS_IN_FLIGHT = 4  # a many-video step's embedding requests at once (the service batches them together)


def embedding_code_version(model: str) -> str:
    try:
        model_id = embedding_model_id(model)
    except ModelNotFound:
        model_id = model  # reported clearly when the step runs
    return f"v1:{model_id}"


@dg.asset(
    partitions_def=videos,
    io_manager_key="artifacts",
    group_name="search",
    kinds={"python"},
    code_version="segments-v1",
    retry_policy=RETRY,
    check_specs=checks.specs(checks.PASSAGES_BOUNDED),
)
def segments(
    context: dg.AssetExecutionContext, passages: PassageResource, models: ModelServiceResource, speaker_labels: SpeakerLabels
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Words and labels become retrieval passages: one speaker each, cut at sentence ends, bounded
    by PASSAGE_MAX_SECONDS and by the embedding model's input (its tokenizer counts, in the service)."""
    with failing_clearly(context):
        result, metadata = _segments(context, passages, models, speaker_labels)
        yield dg.Output(result, metadata=metadata)
        found = lib_checks.passages_bounded(result, len(speaker_labels.words), passages.max_seconds)
        yield from checks.results(context, checks.PASSAGES_BOUNDED, {result.video_id: found})


def _segments(context, passages, models, speaker_labels: SpeakerLabels) -> tuple[Passages, dict]:
    t0 = time.perf_counter()
    video_id, model = speaker_labels.video_id, passages.embedding_model
    about = f"video {video_id}"
    text_model = models.call("text_model", model, about=about)
    unique = sorted({w.text for w in speaker_labels.words})
    tokens = dict(zip(unique, models.call("count_tokens", unique, model, about=about) if unique else [], strict=True))
    options = PassageOptions(max_seconds=passages.max_seconds, max_tokens=min(passages.max_tokens, text_model.max_tokens))
    result = build_passages(video_id, speaker_labels.words, options, tokens.__getitem__)
    lengths = [p.end - p.start for p in result.passages]
    return result, {
        "passages": len(result.passages),
        "speakers": ", ".join(sorted({p.speaker for p in result.passages})),
        "mean_passage_seconds": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
        "max_passage_seconds": round(max(lengths), 2) if lengths else 0.0,
        "max_tokens": options.max_tokens,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def build_embedding_assets(model: str) -> list[dg.AssetsDefinition]:
    """`embeddings` and `db_rows` for an embedding model: its id is in their code_version, so a
    model change makes exactly these two stale."""
    version = embedding_code_version(model)

    @dg.asset(
        partitions_def=videos,
        io_manager_key="artifacts",
            pool="gpu",
        op_tags=gpu_priority(3),
        group_name="search",
        kinds={"sentence_transformers", "python"},
        code_version=f"embeddings-{version}",
        retry_policy=RETRY,
        output_required=False,
        check_specs=checks.specs(checks.VECTORS_VALID),
        ins={"segments": dg.AssetIn(metadata={ALLOW_MISSING: True})},
    )
    def embeddings(
        context: dg.AssetExecutionContext, passages: PassageResource, models: ModelServiceResource,
        segments: dict[str, Passages],
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        """Passage vectors: every video's passages sent to the service's batched text embedder. A
        video without passages (its run failed before them) is skipped, not a failure: a re-embed
        of every partition embeds the others."""
        with failing_clearly(context):
            skipped = sorted(set(context.partition_keys) - set(segments))
            if skipped:
                context.log.warning("skipped %d videos without passages (their runs failed or never ran): %s",
                                    len(skipped), ", ".join(skipped[:20]))
            if not segments:  # nothing to embed: no output (db_rows is skipped), the check says why
                why = Check(True, "skipped: no passages (the video's run failed before them, or never ran)", {"skipped": True})
                yield from checks.results(context, checks.VECTORS_VALID, dict.fromkeys(skipped, why))
                return
            vectors, dim, metadata = _embeddings(context, passages, models, segments)
            yield dg.Output(vectors, metadata={**metadata, "videos_skipped": len(skipped)})
            found = {v: lib_checks.vectors_valid(segments[v], vectors[v], dim) for v in vectors}
            yield from checks.results(context, checks.VECTORS_VALID, found)

    @dg.asset(
        partitions_def=videos,
            group_name="search",
        kinds={"postgres"},
        code_version=f"db-rows-{version}",
        deps=["audio"],
        retry_policy=RETRY,
        check_specs=checks.specs(checks.ROWS_MATCH, checks.MODEL_COVERS),
        ins={"segments": dg.AssetIn(metadata={ALLOW_MISSING: True}), "embeddings": dg.AssetIn(metadata={ALLOW_MISSING: True})},
    )
    def db_rows(
        context: dg.AssetExecutionContext,
        archive: ArchiveResource,
        artifacts: dg.ResourceParam[ArtifactIOManager],
        segments: dict[str, Passages],
        embeddings: dict[str, PassageVectors],
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """Each video's rows (its `videos` row, passages, vectors keyed by model) replaced in one
        transaction (binary COPY)."""
        with failing_clearly(context):
            yield from _db_rows(context, archive, artifacts, segments, embeddings)

    return [embeddings, db_rows]


def _embeddings(context, passages, models, segments: dict[str, Passages]) -> tuple[dict[str, PassageVectors], int, dict]:
    text_model = models.call("text_model", passages.embedding_model)
    total = sum(len(p.passages) for p in segments.values())
    context.log.info("embedding %d passages of %d videos with %s", total, len(segments), text_model.model_id)
    t0 = time.perf_counter()

    def embed(video_id: str):
        texts = [p.text for p in segments[video_id].passages]
        return video_id, models.call("embed_texts", texts, passages.embedding_model, about=f"video {video_id}")

    with ThreadPoolExecutor(min(CALLS_IN_FLIGHT, max(1, len(segments)))) as pool:
        answers = dict(pool.map(embed, sorted(segments)))
    seconds = time.perf_counter() - t0
    batch_ids = {i for a in answers.values() for i in a.batch.get("ids", [])}
    metadata = {
        "videos": len(segments),
        "passages": total,
        "batch_size": passages.batch_size,
        "service_batches": len(batch_ids),
        "max_callers_in_a_batch": max((a.batch.get("callers", 0) for a in answers.values()), default=0),
        "passages_per_second": round(total / seconds, 1) if seconds > 0 else 0.0,
        "seconds": round(seconds, 2),
        "model": text_model.model_id,
        "dimensions": text_model.dim,
        **served_metadata(*answers.values()),
    }
    vectors = {v: PassageVectors(video_id=v, model=text_model.model_id, vectors=a.value) for v, a in answers.items()}
    return vectors, text_model.dim, metadata


def _db_rows(context, archive, artifacts, segments: dict[str, Passages], embeddings: dict[str, PassageVectors]):
    t0 = time.perf_counter()
    store = artifacts.store
    ready = sorted(set(segments) & set(embeddings))
    skipped = sorted(set(context.partition_keys) - set(ready))
    if skipped:
        context.log.warning("skipped %d videos without vectors: %s", len(skipped), ", ".join(skipped[:20]))
    items = [(store.load("audio", v, AudioRef).meta, segments[v], embeddings[v]) for v in ready]
    with archive.connect() as conn:
        written = writer.write_videos(conn, items)
        infos = {i.model: i for i in writer.model_infos(conn)}
    for c in written:
        context.log.info("video %s: %d passages, %d vectors (%s) written", c.video_id, c.segments, c.vectors, c.model)
    dropped = 0
    if artifacts.audio_retention == "drop":  # the rows are committed: the audio is not needed to search
        dropped = sum(store.delete_waveform("audio", c.video_id) for c in written)
    yield dg.MaterializeResult(
        metadata={
            "videos": len(written),
            "videos_skipped": len(skipped),
            "segments": sum(c.segments for c in written),
            "vectors": sum(c.vectors for c in written),
            "segments_replaced": sum(1 for c in written if c.segments_replaced),
            "index_created": any(c.index_created for c in written),
            "audio_retention": artifacts.audio_retention,
            "audio_dropped_bytes": dropped,
            "seconds": round(time.perf_counter() - t0, 2),
            **run_stage_metadata(context),
        }
    )
    yield from checks.results(context, checks.ROWS_MATCH, {c.video_id: lib_checks.rows_match(c, segments[c.video_id]) for c in written})
    model = next((c.model for c in written), None)
    coverage = lib_checks.model_covers_archive(infos.get(model), model) if model else Check(True, "no video written")
    yield from checks.results(context, checks.MODEL_COVERS, {"archive": coverage})
