"""`search(...)`: the Python function behind `chaffee search`, on the configured settings. The
query is embedded by the model service (the model that embedded the passages, resident there).

    from chaffee_assets.app.search import search
    for hit in search("ketones and the brain", k=5, speaker="Chaffee"):
        print(hit.score, hit.speaker, hit.title, hit.url)
"""

from __future__ import annotations

from chaffee_assets.archive import db
from chaffee_assets.archive import search as archive_search
from chaffee_assets.lib.types import SearchHit
from chaffee_assets.settings import Settings, get_settings


def search(
    query: str,
    k: int = 5,
    speaker: str | None = None,
    video: str | None = None,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """Ranked passages for `query` with speaker, title, times and a link to the second."""
    from chaffee_assets.instance import model_service
    from chaffee_assets.instance.setup import archive_url
    from chaffee_assets.lib.models.client import ServiceQueryEmbedder

    settings = settings or get_settings()
    archive_search.validate_query(query, k)  # before connecting to anything
    with model_service.client(settings) as models, db.connect(archive_url(settings)) as conn:
        embedder = ServiceQueryEmbedder(models, settings.embedding_model)
        return archive_search.search(conn, embedder, query, k=k, speaker=speaker, video=video,
                                     encoder_for=embedder.encoder_for)
