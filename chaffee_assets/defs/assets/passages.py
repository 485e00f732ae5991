"""`segments`, `embeddings`, `db_rows`: passages, their vectors (batched across every video in
the step) and the video's rows in the archive."""


import time

import dagster as dg

from chaffee_assets.archive import writer
from chaffee_assets.defs.assets.audio import PER_VIDEO
from chaffee_assets.defs.assets.speech import gpu_priority
from chaffee_assets.defs.metadata import run_stage_metadata, timing_metadata
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.resources import (
    ArchiveResource,
    ArtifactStoreResource,
    EmbedderResource,
    PassageResource,
)
from chaffee_assets.lib.clock import model_call, step_clock
from chaffee_assets.lib.errors import ModelNotFound
from chaffee_assets.lib.models.registry import embedding_model_id
from chaffee_assets.lib.passages import PassageOptions, build_passages
from chaffee_assets.lib.types import Passages, PassageVectors, SpeakerLabels

# A backfill or a re-embed over many videos runs these as one step: one model load, batches of
# BATCH_SIZE across videos. A single new video runs them in its own run.
BATCHED = dg.BackfillPolicy.single_run()


def embedding_code_version(model: str) -> str:
    try:
        model_id = embedding_model_id(model)
    except ModelNotFound:
        model_id = model  # reported clearly when the step runs
    return f"v1:{model_id}"


@dg.asset(
    partitions_def=videos,
    io_manager_key="artifacts",
    backfill_policy=PER_VIDEO,
    group_name="search",
    kinds={"python"},
    code_version="segments-v1",
)
def segments(context: dg.AssetExecutionContext, passages: PassageResource, speaker_labels: SpeakerLabels) -> Passages:
    """Words and labels become retrieval passages: one speaker each, cut at sentence ends, bounded."""
    t0 = time.perf_counter()
    with step_clock(uses=["tokenizer"]) as clock:
        counter = passages.token_counter()
        options = PassageOptions(max_seconds=passages.max_seconds, max_tokens=min(passages.max_tokens, counter.max_tokens))
        result = build_passages(speaker_labels.video_id, speaker_labels.words, options, counter.count_tokens)
    lengths = [p.end - p.start for p in result.passages]
    context.add_output_metadata(
        {
            "passages": len(result.passages),
            "speakers": dg.MetadataValue.json(sorted({p.speaker for p in result.passages})),
            "mean_passage_seconds": round(sum(lengths) / len(lengths), 2) if lengths else 0.0,
            "max_passage_seconds": round(max(lengths), 2) if lengths else 0.0,
            "seconds": round(time.perf_counter() - t0, 2),
            **timing_metadata(clock),
        }
    )
    return result


def build_embedding_assets(model: str) -> list[dg.AssetsDefinition]:
    """`embeddings` and `db_rows` for an embedding model: its id is in their code_version, so a
    model change makes exactly these two stale."""
    version = embedding_code_version(model)

    @dg.asset(
        partitions_def=videos,
        io_manager_key="artifacts",
        backfill_policy=BATCHED,
        pool="gpu",
        op_tags=gpu_priority(3),
        group_name="search",
        kinds={"sentence_transformers", "python"},
        code_version=f"embeddings-{version}",
    )
    def embeddings(
        context: dg.AssetExecutionContext, embedder: EmbedderResource, segments: dict[str, Passages]
    ) -> dict[str, PassageVectors]:
        """Passage vectors, batched across every video in the step (one model load)."""
        with step_clock(uses=["text_embedder"]) as clock:
            model = embedder.embedder()
            total = sum(len(p.passages) for p in segments.values())
            context.log.info("embedding %d passages of %d videos with %s", total, len(segments), model.model_id)
            t0 = time.perf_counter()
            with model_call(model.model_id):
                result = model.embed_videos(segments)
            seconds = time.perf_counter() - t0
        context.add_output_metadata(
            {
                "videos": len(segments),
                "passages": total,
                "batch_size": embedder.batch_size,
                "passages_per_second": round(total / seconds, 1) if seconds > 0 else 0.0,
                "seconds": round(seconds, 2),
                "model": model.model_id,
                "dimensions": model.dim,
                **timing_metadata(clock),
            }
        )
        return result

    @dg.asset(
        partitions_def=videos,
        backfill_policy=BATCHED,
        group_name="search",
        kinds={"postgres"},
        code_version=f"db-rows-{version}",
        deps=["audio"],
    )
    def db_rows(
        context: dg.AssetExecutionContext,
        archive: ArchiveResource,
        artifact_store: ArtifactStoreResource,
        segments: dict[str, Passages],
        embeddings: dict[str, PassageVectors],
    ) -> dg.MaterializeResult:
        """Each video's rows replaced in one transaction (binary COPY); vectors keyed by model."""
        t0 = time.perf_counter()
        with step_clock() as clock:
            store_ = artifact_store.store
            items = [(store_.load_audio_meta(v), segments[v], embeddings[v]) for v in sorted(segments)]
            with archive.connect() as conn:
                written = writer.write_videos(conn, items)
        for c in written:
            context.log.info("video %s: %d passages, %d vectors (%s) written", c.video_id, c.segments, c.vectors, c.model)
        return dg.MaterializeResult(
            metadata={
                "videos": len(written),
                "segments": sum(c.segments for c in written),
                "vectors": sum(c.vectors for c in written),
                "segments_replaced": sum(1 for c in written if c.segments_replaced),
                "index_created": any(c.index_created for c in written),
                "seconds": round(time.perf_counter() - t0, 2),
                "timeline": dg.MetadataValue.json(clock.summary()["timeline"]),
                **run_stage_metadata(context),
            }
        )

    return [embeddings, db_rows]

