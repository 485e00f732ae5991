import dagster as dg

from chaffee_assets.defs.assets.audio import audio
from chaffee_assets.defs.assets.passages import build_embedding_assets, segments
from chaffee_assets.defs.assets.speech import diarization, speaker_labels, transcript


def all_assets(embedding_model: str) -> list[dg.AssetsDefinition]:
    """The seven assets, in pipeline order (embeddings and db_rows versioned by the embedding model)."""
    return [audio, transcript, diarization, speaker_labels, segments, *build_embedding_assets(embedding_model)]
