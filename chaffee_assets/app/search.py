"""`search(...)`: the Python function behind `chaffee search`, on the configured settings. The
query is embedded by the model service (the model that embedded the passages, resident there).

    from chaffee_assets.app.search import search
    for hit in search("ketones and the brain", k=5, speaker="Chaffee"):
        print(hit.score, hit.speaker, hit.title, hit.url)

`Searcher` keeps one model-service client for many searches (the search page holds one).
"""

from __future__ import annotations

from chaffee_assets.archive import db
from chaffee_assets.archive import search as archive_search
from chaffee_assets.lib.types import SearchHit
from chaffee_assets.settings import Settings, get_settings


class Searcher:
    """Searches of one installation: a model-service client held open, a database connection per
    call (the archive's server may restart between calls; a connection costs ~1 ms on its socket)."""

    def __init__(self, settings: Settings | None = None, **client_options):
        from chaffee_assets.instance import model_service

        self.settings = settings or get_settings()
        self._client = model_service.client(self.settings, **client_options)
        self._embedder = None

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def connect(self):
        from chaffee_assets.instance.setup import archive_url

        return db.connect(archive_url(self.settings))

    def search(self, query: str, k: int = 5, speaker: str | None = None, video: str | None = None) -> list[SearchHit]:
        """Ranked passages for `query` with speaker, title, date, times and a link to the second."""
        from chaffee_assets.lib.models.client import ServiceQueryEmbedder

        archive_search.validate_query(query, k)  # before connecting to anything
        if self._embedder is None:
            self._embedder = ServiceQueryEmbedder(self._client, self.settings.embedding_model)
        with self.connect() as conn:
            return archive_search.search(conn, self._embedder, query, k=k, speaker=speaker, video=video,
                                         encoder_for=self._embedder.encoder_for)


def search(
    query: str,
    k: int = 5,
    speaker: str | None = None,
    video: str | None = None,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """Ranked passages for `query` with speaker, title, times and a link to the second."""
    archive_search.validate_query(query, k)  # before connecting to anything
    with Searcher(settings) as searcher:
        return searcher.search(query, k=k, speaker=speaker, video=video)
