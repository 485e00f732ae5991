"""`search(...)`: the Python function behind `chaffee search`, on the configured settings.

    from chaffee_assets.app.search import search
    for hit in search("ketones and the brain", k=5, speaker="Chaffee"):
        print(hit.score, hit.speaker, hit.title, hit.url)
"""

from __future__ import annotations

from functools import lru_cache

from chaffee_assets.archive import db
from chaffee_assets.archive import search as lib_search
from chaffee_assets.lib.types import SearchHit
from chaffee_assets.settings import Settings, get_settings


@lru_cache(maxsize=4)
def _embedder(model: str, runtime):
    """One model load per process, however many searches."""
    from chaffee_assets.lib.models.text_embed import TextEmbedder

    return TextEmbedder(model, runtime)


def search(
    query: str,
    k: int = 5,
    speaker: str | None = None,
    video: str | None = None,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """Ranked passages for `query` with speaker, title, times and a link to the second."""
    from chaffee_assets.instance.setup import archive_url

    settings = settings or get_settings()
    embedder = _embedder(settings.embedding_model, settings.model_runtime())
    with db.connect(archive_url(settings)) as conn:
        return lib_search.search(conn, embedder, query, k=k, speaker=speaker, video=video)
