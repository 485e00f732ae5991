"""Writing the archive: a video's row, its passages (`segments`) and their vectors per model.

`write_video` replaces one video's rows in one transaction: readers see the old rows or the new
ones, never a mix, and a crash at any point leaves the old rows. Rows that did not change are left
alone, so a re-run writes nothing and a new model's vectors never disturb the previous model's.

Each model has a partial HNSW cosine index on `embedding::vector(dim)` (the column holds vectors of
every model's dimension). Inserting into an HNSW index costs far more than a plain COPY, so a bulk
first load of a model (`write_videos` when the model has no index yet) loads every video first and
builds the index once at the end; otherwise `write_video` creates the index with the model's first
vectors and later writes maintain it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
from psycopg import sql

from chaffee_assets.lib.errors import DatabaseError, VideoError
from chaffee_assets.lib.ids import validate_video_id
from chaffee_assets.lib.types import ModelInfo, Passages, PassageVectors, RowCounts, VideoMeta

log = logging.getLogger(__name__)

HNSW_M, HNSW_EF_CONSTRUCTION = 16, 128  # at 450 k passages ef_construction 64 capped recall@10 at 0.92 (bench/search_recall.py)


# -- writing --------------------------------------------------------------------------------------


def upsert_video_meta(conn: psycopg.Connection, meta: VideoMeta) -> None:
    """Record (or update) a video's row; its segments and vectors are untouched."""
    validate_video_id(meta.video_id)
    with _db_errors(meta.video_id, "recording the video"), conn.transaction():
        _upsert_video(conn, meta)


def write_video(
    conn: psycopg.Connection,
    meta: VideoMeta,
    passages: Passages,
    vectors: PassageVectors,
    *,
    ensure_index: bool = True,
) -> RowCounts:
    """Upsert the video, replace its segments if they changed, then its vectors of `vectors.model`.

    One transaction (a savepoint when the connection is already inside the caller's transaction).
    `ensure_index=False` skips creating the model's HNSW index (bulk loads: see `write_videos`).
    """
    vid = meta.video_id
    _check(meta, passages, vectors)
    t0 = time.perf_counter()
    has_rows = len(passages.passages) > 0
    with _db_errors(vid, "writing its rows"), conn.transaction():
        created = has_rows and ensure_index and _ensure_index_in_tx(conn, vectors.model, vectors.dim)
        if has_rows:
            _register_model(conn, vectors.model, vectors.dim)
        _upsert_video(conn, meta)
        seg_replaced = _replace_segments(conn, passages)
        vec_replaced = has_rows and _replace_vectors(conn, vectors, passages, force=seg_replaced)
        _record_coverage(conn, vid, vectors.model, len(passages.passages), segments_replaced=seg_replaced)
    counts = RowCounts(
        video_id=vid,
        model=vectors.model,
        segments=len(passages.passages),
        vectors=len(passages.passages),
        segments_replaced=seg_replaced,
        vectors_replaced=vec_replaced,
        index_created=bool(created),
        seconds=time.perf_counter() - t0,
    )
    log.info(
        "video %s: %d segments (%s), %d vectors of %s (%s) in %.2f s",
        vid, counts.segments, "replaced" if seg_replaced else "unchanged", counts.vectors, vectors.model,
        "replaced" if vec_replaced else "unchanged", counts.seconds,
    )
    return counts


def write_videos(
    conn: psycopg.Connection, items: Iterable[tuple[VideoMeta, Passages, PassageVectors]]
) -> list[RowCounts]:
    """`write_video` for each item (each its own transaction); a model with no index yet is loaded
    without one and its index built once at the end, far faster than growing it row by row."""
    items = list(items)
    deferred = {v.model for _, p, v in items if p.passages and not has_index(conn, v.model)}
    out = [write_video(conn, m, p, v, ensure_index=v.model not in deferred) for m, p, v in items]
    for model in sorted(deferred):
        build_index(conn, model)
    return out


def delete_video(conn: psycopg.Connection, video_id: str) -> bool:
    """Remove a video with its segments and vectors; False if it was not there."""
    validate_video_id(video_id)
    with _db_errors(video_id, "deleting it"), conn.transaction():
        cur = conn.execute("DELETE FROM videos WHERE video_id = %s", (video_id,))
        return cur.rowcount > 0


def drop_model(conn: psycopg.Connection, model: str) -> int:
    """Remove a model: its HNSW index, its vectors and its coverage rows, in one transaction; the
    number of vectors removed (0: not registered). Callers check that another model covers the
    archive first (`chaffee gc`)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(model),))
        n = conn.execute("SELECT count(*) FROM segment_vectors WHERE model = %s", (model,)).fetchone()[0]
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(index_name(model))))
        conn.execute("DELETE FROM segment_vectors WHERE model = %s", (model,))
        gone = conn.execute("DELETE FROM embedding_models WHERE model = %s", (model,)).rowcount
    log.info("dropped embedding model %s: %d vectors and its index", model, n)
    return int(n) if gone else 0


# -- indexes --------------------------------------------------------------------------------------


def index_name(model: str) -> str:
    """The HNSW index of one model: named by a hash, since a model id may hold any character."""
    return "segment_vectors_hnsw_" + hashlib.sha1(model.encode()).hexdigest()[:16]


def has_index(conn: psycopg.Connection, model: str) -> bool:
    with conn.transaction():
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (index_name(model),)).fetchone()
    return bool(row and row[0])


def build_index(conn: psycopg.Connection, model: str, *, concurrently: bool = True) -> float:
    """Build the model's HNSW index over its stored vectors (no-op if a valid one exists); seconds.

    `concurrently` (the default) lets searches and writes go on during the build; it needs the
    connection idle (outside a transaction). An invalid leftover of a failed build is rebuilt.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise DatabaseError("build_index needs a connection outside a transaction")
    name = index_name(model)
    t0 = time.perf_counter()
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        dim = model_dim(conn, model)
        if dim is None:
            raise DatabaseError(f"embedding model {model!r} has no vectors: nothing to index")
        conn.execute("SELECT pg_advisory_lock(%s)", (_lock_key(model),))
        try:
            valid = conn.execute(
                "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)", (name,)
            ).fetchone()
            if valid and valid[0]:
                return 0.0
            if valid:  # a failed concurrent build left an invalid index
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            n = conn.execute("SELECT count(*) FROM segment_vectors WHERE model = %s", (model,)).fetchone()[0]
            for name_, value in index_build_settings(int(n), dim).items():
                conn.execute("SELECT set_config(%s, %s, false)", (name_, value))
            conn.execute(_index_ddl(model, dim, concurrently=concurrently))
        finally:
            conn.execute("RESET maintenance_work_mem")
            conn.execute("RESET max_parallel_maintenance_workers")
            conn.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(model),))
    except psycopg.Error as e:
        raise DatabaseError(f"building the HNSW index of model {model!r} failed: {e}") from e
    finally:
        conn.autocommit = autocommit
    seconds = time.perf_counter() - t0
    log.info("built HNSW index %s for model %s (dim %d) in %.1f s", name, model, dim, seconds)
    return seconds


def index_build_settings(n_vectors: int, dim: int) -> dict[str, str]:
    """Session settings for building an HNSW index over `n_vectors` of `dim`: a `maintenance_work_mem`
    that holds the whole graph (a build slows down many times once it spills) and parallel workers.

    Sized from the client machine, which is the server's on the embedded default; a server that
    allows less caps these itself.
    """
    graph = n_vectors * (4 * dim + 2 * HNSW_M * 16 + 96)  # vector + layer-0 neighbours + element header
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    mem_mb = int(min(max(graph * 1.25, 64 << 20), min(4 << 30, ram // 4))) >> 20
    workers = max(0, min((os.cpu_count() or 1) - 1, 4))
    return {"maintenance_work_mem": f"{mem_mb}MB", "max_parallel_maintenance_workers": str(workers)}


def _index_ddl(model: str, dim: int, *, concurrently: bool = False) -> sql.Composed:
    return sql.SQL(
        "CREATE INDEX {conc} IF NOT EXISTS {name} ON segment_vectors "
        "USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WITH (m = {m}, ef_construction = {efc}) "
        "WHERE model = {model}"
    ).format(
        m=sql.SQL(str(HNSW_M)),
        efc=sql.SQL(str(HNSW_EF_CONSTRUCTION)),
        conc=sql.SQL("CONCURRENTLY" if concurrently else ""),
        name=sql.Identifier(index_name(model)),
        dim=sql.SQL(str(int(dim))),
        model=sql.Literal(model),
    )


def _ensure_index_in_tx(conn: psycopg.Connection, model: str, dim: int) -> bool:
    """Create the model's index inside the current transaction if it does not exist yet.

    Runs first in `write_video`, before this transaction holds any lock on segment_vectors, so two
    writers creating the same index cannot deadlock (they queue on an advisory lock instead).
    """
    if has_index(conn, model):
        return False
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(model),))
    if has_index(conn, model):
        return False
    t0 = time.perf_counter()
    conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (index_build_settings(1000, dim)["maintenance_work_mem"],))
    conn.execute(_index_ddl(model, dim))
    log.info("created HNSW index %s for model %s (dim %d) in %.2f s", index_name(model), model, dim, time.perf_counter() - t0)
    return True


def _lock_key(model: str) -> int:
    return int.from_bytes(hashlib.sha1(b"chaffee-index:" + model.encode()).digest()[:8], "big", signed=True)


# -- reading --------------------------------------------------------------------------------------


def counts(conn: psycopg.Connection) -> dict:
    """{"videos": n, "segments": n, "vectors": {model: n}}."""
    with conn.transaction():
        videos = conn.execute("SELECT count(*) FROM videos").fetchone()[0]
        segments = conn.execute("SELECT count(*) FROM segments").fetchone()[0]
        per_model = conn.execute(
            "SELECT m.model, (SELECT count(*) FROM segment_vectors v WHERE v.model = m.model) "
            "FROM embedding_models m ORDER BY m.model"
        ).fetchall()
    return {"videos": int(videos), "segments": int(segments), "vectors": {m: int(n) for m, n in per_model}}


def model_infos(conn: psycopg.Connection) -> list[ModelInfo]:
    """Every registered model with its coverage, most recently created first.

    Coverage is data, kept by `write_video` in its own transaction (`video_models` and the counters
    of migration 005): reading it costs the same at 10 videos or 10 000. A video counts as covered
    when it has the model's vectors: `write_video` writes all of a video's vectors of a model at
    once, and a change of passages drops every model's.
    """
    with conn.transaction():
        rows = conn.execute(
            "SELECT m.model, m.dim, m.created_at, m.videos_covered, t.videos_with_passages "
            "FROM embedding_models m CROSS JOIN archive_totals t ORDER BY m.created_at DESC, m.model"
        ).fetchall()
    return [ModelInfo(m, int(d), c, int(n), int(total)) for m, d, c, n, total in rows]


def model_coverage(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """model → (videos covered by its vectors, videos that have passages)."""
    return {i.model: (i.videos_covered, i.videos_with_passages) for i in model_infos(conn)}


# -- helpers --------------------------------------------------------------------------------------


@contextmanager
def _db_errors(video_id: str, doing: str) -> Iterator[None]:
    """Turn a database failure into a DatabaseError naming the video (the cause stays chained)."""
    try:
        yield
    except psycopg.Error as e:
        raise DatabaseError(f"video {video_id}: {doing} failed: {type(e).__name__}: {e}",
                            transient=isinstance(e, psycopg.OperationalError)) from e


def _check(meta: VideoMeta, passages: Passages, vectors: PassageVectors) -> None:
    vid = validate_video_id(meta.video_id)
    if passages.video_id != vid or vectors.video_id != vid:
        raise VideoError(vid, f"passages ({passages.video_id}) and vectors ({vectors.video_id}) must belong to it")
    for i, p in enumerate(passages.passages):
        if p.ordinal != i or p.video_id != vid:
            raise VideoError(vid, f"passage {i} has ordinal {p.ordinal} of video {p.video_id}; expected 0..n-1")
    n = len(passages.passages)
    if vectors.vectors.ndim != 2 or vectors.vectors.shape[0] != n:
        raise VideoError(vid, f"{n} passages but vectors of shape {vectors.vectors.shape}")
    if n and not np.all(np.isfinite(vectors.vectors)):
        raise VideoError(vid, f"non-finite values in the vectors of model {vectors.model}")
    if n and not vectors.model:
        raise VideoError(vid, "vectors carry no model id")


def _upsert_video(conn: psycopg.Connection, meta: VideoMeta) -> None:
    conn.execute(
        """
        INSERT INTO videos (video_id, title, source_url, upload_date, duration_s, size_bytes, channel)
        VALUES (%s, %s, %s, %s::date, %s, %s, %s)
        ON CONFLICT (video_id) DO UPDATE SET
            title = EXCLUDED.title, source_url = EXCLUDED.source_url, upload_date = EXCLUDED.upload_date,
            duration_s = EXCLUDED.duration_s, size_bytes = EXCLUDED.size_bytes, channel = EXCLUDED.channel,
            updated_at = now()
        WHERE (videos.title, videos.source_url, videos.upload_date, videos.duration_s, videos.size_bytes, videos.channel)
              IS DISTINCT FROM
              (EXCLUDED.title, EXCLUDED.source_url, EXCLUDED.upload_date, EXCLUDED.duration_s, EXCLUDED.size_bytes, EXCLUDED.channel)
        """,
        (meta.video_id, meta.title, meta.source_url, meta.upload_date, float(meta.duration_s), int(meta.size_bytes), meta.channel),
    )


def _register_model(conn: psycopg.Connection, model: str, dim: int) -> None:
    conn.execute("INSERT INTO embedding_models (model, dim) VALUES (%s, %s) ON CONFLICT (model) DO NOTHING", (model, dim))
    stored = model_dim(conn, model)
    if stored != dim:
        raise DatabaseError(f"embedding model {model!r} is registered with dimension {stored}, these vectors have {dim}")


def model_dim(conn: psycopg.Connection, model: str) -> int | None:
    """The dimension the model's vectors are registered with; None: it has none."""
    row = conn.execute("SELECT dim FROM embedding_models WHERE model = %s", (model,)).fetchone()
    return int(row[0]) if row else None


def _replace_segments(conn: psycopg.Connection, passages: Passages) -> bool:
    """Replace the video's segments (and so every model's vectors) unless they are unchanged."""
    vid = passages.video_id
    stored = conn.execute(
        "SELECT ordinal, start_s, end_s, speaker, text FROM segments WHERE video_id = %s ORDER BY ordinal", (vid,)
    ).fetchall()
    new = [(p.ordinal, float(p.start), float(p.end), p.speaker, p.text) for p in passages.passages]
    if stored == new:
        return False
    conn.execute("DELETE FROM segments WHERE video_id = %s", (vid,))
    with conn.cursor() as cur, cur.copy(
        "COPY segments (video_id, ordinal, start_s, end_s, speaker, text) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "int4", "float8", "float8", "text", "text"])
        for row in new:
            copy.write_row((vid, *row))
    return True


def _replace_vectors(conn: psycopg.Connection, vectors: PassageVectors, passages: Passages, *, force: bool) -> bool:
    """Replace the video's vectors of this model (binary COPY) unless they are unchanged."""
    vid, model = vectors.video_id, vectors.model
    new = np.ascontiguousarray(vectors.vectors, dtype=np.float32)
    if not force:
        stored = conn.execute(
            "SELECT embedding FROM segment_vectors WHERE model = %s AND video_id = %s ORDER BY ordinal",
            (model, vid),
            binary=True,
        ).fetchall()
        if len(stored) == len(new) and all(np.array_equal(r[0].to_numpy(), v) for r, v in zip(stored, new, strict=True)):
            return False
    conn.execute("DELETE FROM segment_vectors WHERE model = %s AND video_id = %s", (model, vid))
    copy_vectors(conn, vid, model, new, [p.speaker for p in passages.passages])
    return True


def _record_coverage(conn: psycopg.Connection, vid: str, model: str, n: int, *, segments_replaced: bool) -> None:
    """The video's passage count and the models whose vectors it has (the counters follow by trigger).

    Rows are changed one model at a time in one order for every writer, so two writers updating
    the same models' counters queue instead of deadlocking.
    """
    conn.execute("UPDATE videos SET passages = %s WHERE video_id = %s AND passages <> %s", (n, vid, n))
    have = {r[0] for r in conn.execute("SELECT model FROM video_models WHERE video_id = %s", (vid,))}
    want = set() if n == 0 else ({model} if segments_replaced else have | {model})
    for m in sorted(have ^ want):
        if m in want:
            conn.execute("INSERT INTO video_models (model, video_id) VALUES (%s, %s)", (m, vid))
        else:
            conn.execute("DELETE FROM video_models WHERE model = %s AND video_id = %s", (m, vid))


def copy_vectors(conn: psycopg.Connection, video_id: str, model: str, vectors: np.ndarray, speakers: list[str]) -> None:
    """Binary COPY of one video's vectors (rows 0…, with their passages' speakers) into segment_vectors."""
    if len(speakers) != len(vectors):
        raise VideoError(video_id, f"{len(vectors)} vectors but {len(speakers)} speakers")
    with conn.cursor() as cur, cur.copy(
        "COPY segment_vectors (video_id, ordinal, model, embedding, speaker_key) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["text", "int4", "text", "vector", "text"])
        for i, (v, who) in enumerate(zip(vectors, speakers, strict=True)):
            copy.write_row((video_id, i, model, v, who.lower()))
