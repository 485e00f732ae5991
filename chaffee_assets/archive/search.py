"""Semantic search over the archive: ranked passages with speaker, title and a link at the second.

Search reads one model's vectors only (never mixing vector spaces): the configured model once its
vectors cover every video that has passages, else the most recent model that does (a re-embed in
progress keeps answering from the previous model). The query runs on that model's partial HNSW
index; `hnsw.ef_search` trades recall for latency (default measured by bench/search_recall.py).
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlparse

import numpy as np
import psycopg
from psycopg import sql

from chaffee_assets.archive import writer
from chaffee_assets.lib.errors import SearchError
from chaffee_assets.lib.ids import validate_video_id, youtube_id, youtube_watch_url
from chaffee_assets.lib.models.registry import EMBEDDING_ALIASES
from chaffee_assets.lib.types import SearchHit
from chaffee_assets.lib.vectors import normalize

log = logging.getLogger(__name__)

# bench/search_recall.py at 450 k clustered 384-d passages (HNSW m=16, ef_construction=128): recall@10
# 0.955-0.974 at 64 depending on the data, 0.972-0.991 at 200, p95 ~10 ms on 2 CPU cores: 200 keeps
# the 0.95 goal with a margin at channel size, filtered scans included.
DEFAULT_EF_SEARCH = 200
MAX_K = 1000
# A speaker filter matching at most this many passages is answered by exact search over them (recall
# 1, and cheaper than walking the graph past every other speaker's passages); a commoner speaker by
# the HNSW index with pgvector's iterative scan (bench/search_recall.py measures both sides).
EXACT_FILTER_MAX = 5_000
MAX_SCAN_TUPLES = 50_000  # how far an iterative scan walks before giving up (pgvector's default 20 000)

QueryVectorFn = Callable[[str], np.ndarray]


@runtime_checkable
class QueryEmbedder(Protocol):
    """What search needs of an embedder (`embed.TextEmbedder` is one)."""

    model_id: str

    def embed_query(self, text: str) -> np.ndarray: ...


# -- choosing the model ---------------------------------------------------------------------------


def choose_model(conn: psycopg.Connection, configured_model_id: str | None) -> str:
    """The model whose vectors search reads (see the module docstring); SearchError if none has any."""
    infos = [i for i in writer.model_infos(conn) if i.videos_covered > 0]  # newest first
    if not infos:
        raise SearchError(
            f"the archive has no passage vectors yet (configured embedding model: {configured_model_id}); "
            "run `chaffee ingest` or materialise the `embeddings` and `db_rows` assets first"
        )
    by_model = {i.model: i for i in infos}
    configured = by_model.get(configured_model_id) if configured_model_id else None
    if configured is not None and configured.complete:
        return configured.model
    complete = [i for i in infos if i.complete]
    chosen = complete[0] if complete else max(infos, key=lambda i: (i.videos_covered, i is configured))
    if configured_model_id is not None:
        have = configured.videos_covered if configured else 0
        log.info(
            "embedding model %s covers %d of %d videos; answering from %s (%d of %d)%s",
            configured_model_id, have, chosen.videos_with_passages, chosen.model, chosen.videos_covered,
            chosen.videos_with_passages, "" if chosen.complete else ": no model covers every video yet",
        )
    return chosen.model


# -- searching ------------------------------------------------------------------------------------


def validate_query(query: str, k: int) -> None:
    if not isinstance(query, str) or not query.strip():
        raise SearchError("empty query: give some words to search for")
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K}, got {k}")


def search(
    conn: psycopg.Connection,
    embedder: QueryEmbedder | QueryVectorFn,
    query: str,
    k: int = 10,
    speaker: str | None = None,
    video: str | None = None,
    model: str | None = None,
    ef_search: int = DEFAULT_EF_SEARCH,
    encoder_for: Callable[[str], QueryVectorFn] | None = None,
) -> list[SearchHit]:
    """The `k` passages nearest to `query`, best first.

    While a re-embed is incomplete the previous (packaged) model answers; `encoder_for(model)` gives
    its query encoder (the model service's, in the app).

    `embedder` is a `QueryEmbedder` (its `model_id` is the configured model) or a plain function
    text → vector, taken to embed for `model` (or for the model `choose_model` picks). `speaker`
    matches case-insensitively; `video` is a video id.
    """
    validate_query(query, k)
    if video is not None:
        validate_video_id(video)
    speaker = speaker.strip() if speaker and speaker.strip() else None
    configured = embedder.model_id if isinstance(embedder, QueryEmbedder) else None
    model = model or choose_model(conn, configured)
    with conn.transaction():
        dim = writer.model_dim(conn, model)
    if dim is None:
        raise SearchError(f"embedding model {model!r} has no vectors in the archive")
    qvec = _query_vector(_query_fn(embedder, model, encoder_for), query, model, dim)
    ef = min(max(int(ef_search), k), 1000)
    with conn.transaction():
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
        exact = video is not None or (speaker is not None and _few_passages(conn, model, speaker))
        if speaker is not None and not exact:  # keep scanning the graph until k rows pass the filter
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            conn.execute("SELECT set_config('hnsw.max_scan_tuples', %s, true)", (str(MAX_SCAN_TUPLES),))
        rows = _fetch(conn, _knn_sql(model, dim, speaker, video, exact=exact), qvec, k, speaker, video)
        if speaker is not None and not exact and len(rows) < k:  # the scan ran out: search exactly
            rows = _fetch(conn, _knn_sql(model, dim, speaker, None, exact=True), qvec, k, speaker, None)
    log.info("search %r with %s (ef_search %d): %d hits", query[:80], model, ef, len(rows))
    return [
        SearchHit(
            score=1.0 - float(distance), video_id=vid, title=title, speaker=spk, start=float(start),
            end=float(end), text=text, url=hit_url(source_url, vid, float(start)), upload_date=date,
        )
        for distance, vid, start, end, spk, text, title, source_url, date in rows
    ]


def _few_passages(conn: psycopg.Connection, model: str, speaker: str) -> bool:
    """Whether the speaker has at most EXACT_FILTER_MAX passages (a bounded index-only count)."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM segment_vectors WHERE model = %s AND speaker_key = lower(%s) LIMIT %s) s",
        (model, speaker, EXACT_FILTER_MAX + 1),
    ).fetchone()
    return int(row[0]) <= EXACT_FILTER_MAX


def _query_fn(
    embedder: QueryEmbedder | QueryVectorFn, model: str, encoder_for: Callable[[str], QueryVectorFn] | None
) -> QueryVectorFn:
    if not isinstance(embedder, QueryEmbedder):
        if not callable(embedder):
            raise SearchError(f"cannot embed the query with {embedder!r}: not an embedder nor a function")
        return embedder
    if embedder.model_id == model:
        return embedder.embed_query
    if model not in EMBEDDING_ALIASES or encoder_for is None:
        raise SearchError(
            f"the archive is answered from model {model!r} while {embedder.model_id!r} is not complete, and "
            f"{model!r} is not a packaged model that can embed the query here: finish the re-embed, or search with "
            f"model={embedder.model_id!r}"
        )
    return encoder_for(model)


def _query_vector(fn: QueryVectorFn, query: str, model: str, dim: int) -> np.ndarray:
    vec = np.asarray(fn(query), dtype=np.float32).reshape(-1)
    if vec.shape[0] != dim:
        raise SearchError(f"the query vector has {vec.shape[0]} dimensions; model {model!r} has {dim}")
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0.0:
        raise SearchError("the query embedding is zero or not finite")
    return normalize(vec)


def _knn_sql(model: str, dim: int, speaker: str | None, video: str | None, *, exact: bool) -> sql.Composed:
    """Nearest passages of one model. Approximate: ORDER BY the model's HNSW index expression
    (model and dim as literals so the planner matches the partial index). Exact: a materialised
    candidate set (one video's or one speaker's passages, by their indexes) sorted in full."""
    dist = sql.SQL("sv.embedding::vector({dim}) <=> %(q)s").format(dim=sql.SQL(str(int(dim))))
    where = [sql.SQL("sv.model = {}").format(sql.Literal(model))]
    if video is not None:
        where.append(sql.SQL("sv.video_id = %(video)s"))
    if speaker is not None:  # the speaker is on the vector's row (migration 005)
        where.append(sql.SQL("sv.speaker_key = lower(%(speaker)s)"))
    cand = sql.SQL("SELECT sv.video_id, sv.ordinal, {dist} AS distance FROM segment_vectors sv WHERE {where}").format(
        dist=dist, where=sql.SQL(" AND ").join(where)
    )
    if exact:
        hits = sql.SQL("WITH cand AS MATERIALIZED ({cand}) SELECT * FROM cand ORDER BY distance LIMIT %(k)s").format(cand=cand)
    else:
        hits = sql.SQL("{cand} ORDER BY {dist} LIMIT %(k)s").format(cand=cand, dist=dist)
    return sql.SQL(
        "SELECT h.distance, s.video_id, s.start_s, s.end_s, s.speaker, s.text, v.title, v.source_url, "
        "v.upload_date::text "
        "FROM ({hits}) h JOIN segments s ON s.video_id = h.video_id AND s.ordinal = h.ordinal "
        "JOIN videos v ON v.video_id = h.video_id ORDER BY h.distance, s.video_id, s.ordinal"
    ).format(hits=hits)


def _fetch(conn: psycopg.Connection, query: sql.Composed, qvec: np.ndarray, k: int, speaker: str | None, video: str | None) -> list[tuple]:
    params = {"q": qvec, "k": k, "speaker": speaker, "video": video}
    return conn.execute(query, params, prepare=False).fetchall()


# -- what can be filtered on ---------------------------------------------------------------------


def speakers(conn: psycopg.Connection, limit: int = 200) -> list[tuple[str, int]]:
    """(speaker, passages) of the archive's speakers, most passages first (for a filter's choices)."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT speaker, count(*) FROM segments GROUP BY speaker ORDER BY count(*) DESC, speaker LIMIT %s", (limit,)
        ).fetchall()
    return [(s, int(n)) for s, n in rows]


def videos(conn: psycopg.Connection, limit: int = 1000) -> list[tuple[str, str, str | None]]:
    """(video id, title, upload date) of the videos that have passages, newest first."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT video_id, title, upload_date::text FROM videos WHERE passages > 0 "
            "ORDER BY upload_date DESC NULLS LAST, video_id LIMIT %s", (limit,)
        ).fetchall()
    return [(v, t, d) for v, t, d in rows]


def source_of(conn: psycopg.Connection, video_id: str) -> str | None:
    """The source URL or path recorded for a stored video (None: no such video)."""
    validate_video_id(video_id)
    with conn.transaction():
        row = conn.execute("SELECT source_url FROM videos WHERE video_id = %s", (video_id,)).fetchone()
    return row[0] if row else None


# -- links and output -----------------------------------------------------------------------------


def hit_url(source_url: str, video_id: str, start: float) -> str:
    """A link that opens the media at `start`: YouTube `&t=<s>s`, other URLs and files `#t=<s>`."""
    secs = max(0.0, float(start))
    yid = youtube_id(source_url)
    if yid is not None:
        return youtube_watch_url(yid, secs)
    scheme = urlparse(source_url).scheme.lower()
    if scheme in ("http", "https", "file"):
        base = source_url.split("#", 1)[0]
    elif source_url and len(scheme) <= 1:  # a local path (a drive letter parses as a one-letter scheme)
        base = Path(source_url).expanduser().absolute().as_uri()
    else:
        return source_url
    return f"{base}#t={_fmt_seconds(secs)}"


def _fmt_seconds(secs: float) -> str:
    return f"{secs:.1f}".removesuffix(".0")


def hms(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_hits(hits: Sequence[SearchHit], width: int = 100) -> str:
    """Ranked hits for a terminal: score, speaker, title, start–end, the text, the link."""
    if not hits:
        return "no matching passages"
    blocks = []
    for n, h in enumerate(hits, 1):
        date = f"  |  {h.upload_date}" if h.upload_date else ""
        head = f"{n:>2}. {h.score:.3f}  {h.speaker}  |  {h.title}{date}  |  {hms(h.start)}–{hms(h.end)}"
        body = textwrap.fill(h.text, width=width, initial_indent="    ", subsequent_indent="    ")
        blocks.append(f"{head}\n{body}\n    {h.url}")
    return "\n\n".join(blocks)
