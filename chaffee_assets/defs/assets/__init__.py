import dagster as dg

from chaffee_assets.defs.assets.audio import audio
from chaffee_assets.defs.assets.passages import build_embedding_assets, segments
from chaffee_assets.defs.assets.speech import speech


def all_assets(embedding_model: str) -> list[dg.AssetsDefinition]:
    """The seven assets, in pipeline order (`speech` makes transcript, diarization and
    speaker_labels; embeddings and db_rows are versioned by the embedding model)."""
    return [audio, speech, segments, *build_embedding_assets(embedding_model)]
