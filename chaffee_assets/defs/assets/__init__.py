import warnings

import dagster as dg

# A preview parameter the project uses knowingly (`partitions_def` on the asset checks: each
# video's result), filtered where it is used, before the assets are defined: not repeated by every
# process that loads the code location (the UI, the daemon, each run).
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=r".*partitions_def on an AssetCheckSpec.*")

from chaffee_assets.defs.assets.audio import audio  # noqa: E402 - after the filters above
from chaffee_assets.defs.assets.passages import build_embedding_assets, segments  # noqa: E402 - after the filters above
from chaffee_assets.defs.assets.speech import speech  # noqa: E402 - after the filters above


def all_assets(embedding_model: str) -> list[dg.AssetsDefinition]:
    """The seven assets, in pipeline order (`speech` makes transcript, diarization and
    speaker_labels; embeddings and db_rows are versioned by the embedding model)."""
    return [audio, speech, segments, *build_embedding_assets(embedding_model)]
