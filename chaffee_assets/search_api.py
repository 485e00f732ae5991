"""`search(...)`: the Python function behind `chaffee search`, on the configured settings.

    from chaffee_assets.search_api import search
    for hit in search("ketones and the brain", k=5, speaker="Chaffee"):
        print(hit.score, hit.speaker, hit.title, hit.url)
"""

from __future__ import annotations

from chaffee_assets.lib import db
from chaffee_assets.lib import search as lib_search
from chaffee_assets.lib.types import SearchHit
from chaffee_assets.settings import Settings, get_settings

_EMBEDDERS: dict[tuple[str, str], object] = {}


def _embedder(settings: Settings):
    from chaffee_assets.lib.device import resolve_device
    from chaffee_assets.lib.embed import TextEmbedder

    device = resolve_device(settings.device)[0]
    key = (settings.embedding_model, device)
    if key not in _EMBEDDERS:  # one model load per process, however many searches
        _EMBEDDERS[key] = TextEmbedder(settings.embedding_model, device=device, cache_dir=settings.model_cache_dir)
    return _EMBEDDERS[key]


def search(
    query: str,
    k: int = 5,
    speaker: str | None = None,
    video: str | None = None,
    settings: Settings | None = None,
) -> list[SearchHit]:
    """Ranked passages for `query` with speaker, title, times and a link to the second."""
    from chaffee_assets.defs.build import archive_url

    settings = settings or get_settings()
    embedder = _embedder(settings)
    with db.connect(archive_url(settings)) as conn:
        return lib_search.search(conn, embedder, query, k=k, speaker=speaker, video=video)
