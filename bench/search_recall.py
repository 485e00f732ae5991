"""Search at channel scale: recall@10 and latency against exact search, with and without filters,
at growing archive sizes (default 10 000, 100 000 and 450 000 passages), in one run.

Runs on a fresh embedded Postgres (PostgreSQL 18 + pgvector) in a temporary folder, with the
project's own schema, write path (`writer`) and query path (`search.search`, the model chosen from
the archive's coverage as users get it). For each size the archive grows by binary COPY (videos of
200 passages), the HNSW index is rebuilt by `writer.build_index` (its build settings from the
archive's size), and then:

1. coverage: reading the kept coverage (`writer.model_infos`, migration 005) against the per-query
   recount that search did before (one probe per video), p50 ms;
2. unfiltered queries for each ef_search: recall@10 against exact (numpy) search, p50/p95 ms;
3. filtered queries at the default ef_search: a rare speaker (1 % of passages: exact path), a
   common one (10 %) and the host (89 %) (iterative index scans), one video; recall and p50/p95;
4. exact search in Postgres (no index) for comparison.

The vectors are synthetic but clustered like real passage embeddings, not uniform noise: 50 topics,
20 sub-topics each (1 000 clusters), points spread around their sub-topic so that same-topic
cosines are ~0.3–0.6 and unrelated ones ~0 (MiniLM passages look alike). Queries are fresh points
from the same distribution, so they are not in the table. Uniform random vectors would be a far
harsher (and unrealistic) test for HNSW; real embeddings of 100 000 passages would take ~20 minutes
to compute on 2 CPU cores (MiniLM ~100 passages/s).

    python bench/search_recall.py [--sizes 10000,100000,450000] [--queries 200] [--ef 40,64,100,128,200]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from psycopg import sql

from chaffee_assets.archive import db, search, writer
from chaffee_assets.instance import embedded_pg
from chaffee_assets.lib.types import Passage, Passages, VideoMeta

MODEL = "bench-clustered-384"
PER_VIDEO = 200
K = 10


def clustered(rng: np.random.Generator, n: int, dim: int, centers: np.ndarray) -> np.ndarray:
    x = centers[rng.integers(0, len(centers), n)] + rng.normal(scale=1.0 / np.sqrt(dim), size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_centers(rng: np.random.Generator, dim: int, topics: int = 50, sub: int = 20) -> np.ndarray:
    t = rng.normal(size=(topics, dim))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    c = np.repeat(t, sub, axis=0) + rng.normal(scale=0.8 / np.sqrt(dim), size=(topics * sub, dim))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


# Who speaks, as on the channel: the host in every talk; in one talk of ten (interviews) "Guest 1"
# speaks every other passage; in one of a hundred a named guest does. (A speaker scattered as one
# passage in every video is the worst case for an exact filtered search; the channel has none.)
SPEAKERS = {"Dr Baker": 0.005, "Guest 1": 0.05, "Chaffee": 0.945}  # share of passages


def speaker(video: int, ordinal: int) -> str:
    if ordinal % 2 == 1 and video % 100 == 7:
        return "Dr Baker"
    if ordinal % 2 == 1 and video % 10 == 3:
        return "Guest 1"
    return "Chaffee"


def passages(vid: str, n: int) -> Passages:
    v = int(vid[2:])
    return Passages(vid, tuple(Passage(vid, i, i * 10.0, i * 10.0 + 9, speaker(v, i), f"synthetic passage {i} of {vid}", 5) for i in range(n)))


def meta(vid: str) -> VideoMeta:
    return VideoMeta(video_id=vid, title=f"Talk {vid}", source_url=f"https://www.youtube.com/watch?v={vid}")


def vid_of(v: int) -> str:
    return f"bv{v:05d}"


def grow(conn, vecs: np.ndarray, first_video: int, dim: int) -> float:
    """Videos first_video… with their segments and vectors by binary COPY, coverage rows as the
    writer keeps them, the index dropped first (the bulk path); seconds."""
    t0 = time.perf_counter()
    n_videos = len(vecs) // PER_VIDEO
    vids = [vid_of(first_video + v) for v in range(n_videos)]
    with conn.transaction():
        conn.execute("INSERT INTO embedding_models (model, dim) VALUES (%s, %s) ON CONFLICT DO NOTHING", (MODEL, dim))
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(writer.index_name(MODEL))))  # the bulk path
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO videos (video_id, title, source_url, passages) VALUES (%s, %s, %s, %s)",
                            [(v, meta(v).title, meta(v).source_url, PER_VIDEO) for v in vids])
            with cur.copy("COPY segments (video_id, ordinal, start_s, end_s, speaker, text) FROM STDIN WITH (FORMAT BINARY)") as cp:
                cp.set_types(["text", "int4", "float8", "float8", "text", "text"])
                for v in vids:
                    for p in passages(v, PER_VIDEO).passages:
                        cp.write_row((p.video_id, p.ordinal, p.start, p.end, p.speaker, p.text))
        for i, v in enumerate(vids):
            writer.copy_vectors(conn, v, MODEL, vecs[i * PER_VIDEO : (i + 1) * PER_VIDEO], [p.speaker for p in passages(v, PER_VIDEO).passages])
        conn.execute("INSERT INTO video_models (model, video_id) SELECT %s, unnest(%s::text[])", (MODEL, vids))
    return time.perf_counter() - t0


OLD_RECOUNT = (  # what search ran per query before coverage was kept as data
    "SELECT m.model, (SELECT count(*) FROM videos v WHERE EXISTS (SELECT 1 FROM segment_vectors sv "
    "WHERE sv.model = m.model AND sv.video_id = v.video_id)), (SELECT count(*) FROM videos v WHERE EXISTS "
    "(SELECT 1 FROM segments s WHERE s.video_id = v.video_id)) FROM embedding_models m"
)


def coverage_ms(conn, reps: int = 30) -> tuple[float, float]:
    """p50 ms of the kept coverage read and of the old per-video recount."""
    kept, old = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        writer.model_infos(conn)
        kept.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with conn.transaction():
            conn.execute(OLD_RECOUNT).fetchall()
        old.append(time.perf_counter() - t0)
    return float(np.median(kept) * 1e3), float(np.median(old) * 1e3)


class Lookup:
    """A QueryEmbedder whose 'queries' are names of precomputed vectors (search picks the model)."""

    model_id = MODEL

    def __init__(self, queries: np.ndarray):
        self.vecs = {f"q{i}": q for i, q in enumerate(queries)}

    def embed_query(self, text: str) -> np.ndarray:
        return self.vecs[text]


def run_queries(conn, queries: np.ndarray, truth: list[set], ef: int, **filters) -> tuple[float, float, float]:
    emb = Lookup(queries)
    recalls, lat = [], []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        hits = search.search(conn, emb, f"q{i}", k=K, ef_search=ef, **filters)
        lat.append(time.perf_counter() - t0)
        got = {(h.video_id, int(round(h.start / 10))) for h in hits}
        recalls.append(len(got & truth[i]) / max(1, min(K, len(truth[i]))))
    lat_ms = np.array(lat) * 1000
    return float(np.mean(recalls)), float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 95))


def truth_of(queries: np.ndarray, allv: np.ndarray, ids: list, idx: np.ndarray | None = None) -> list[set]:
    sub = allv if idx is None else allv[idx]
    top = np.argsort(-(queries @ sub.T), axis=1)[:, :K]
    if idx is not None:
        top = idx[top]
    return [{ids[j] for j in row} for row in top]


def exact_sql_ms(conn, queries: np.ndarray, dim: int, n: int = 10) -> float:
    q = f"SELECT video_id, ordinal FROM segment_vectors WHERE model = %s ORDER BY embedding::vector({dim}) <=> %s LIMIT {K}"
    lat = []
    for i in range(min(n, len(queries))):
        t0 = time.perf_counter()
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            conn.execute(q, (MODEL, queries[i]), prepare=False).fetchall()
        lat.append(time.perf_counter() - t0)
    return float(np.percentile(np.array(lat) * 1000, 50))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,450000", help="archive sizes (passages) measured in turn")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ef", default="40,64,100,128,200")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 the chosen ef_search must reach")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--m", type=int, default=writer.HNSW_M, help="HNSW m (the writer's default unless given)")
    ap.add_argument("--ef-construction", type=int, default=writer.HNSW_EF_CONSTRUCTION)
    args = ap.parse_args()
    writer.HNSW_M, writer.HNSW_EF_CONSTRUCTION = args.m, args.ef_construction  # bench only: compare build settings
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)
    centers = make_centers(rng, args.dim)
    sizes = sorted(int(x) for x in args.sizes.split(","))
    efs = [int(x) for x in args.ef.split(",")]
    queries = clustered(rng, args.queries, args.dim, centers)
    allv = np.zeros((0, args.dim), np.float32)
    summary = []

    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    info = embedded_pg.start(tmp / "pgdata")
    try:
        db.ensure_database(info.url(), "bench")
        db.migrate(info.url("bench"))
        for size in sizes:
            n_new = max(PER_VIDEO, (size - len(allv)) // PER_VIDEO * PER_VIDEO)
            new = clustered(rng, n_new, args.dim, centers)
            with db.connect(info.url("bench")) as conn:
                copy_s = grow(conn, new, len(allv) // PER_VIDEO, args.dim)
            allv = np.concatenate([allv, new])
            n = len(allv)
            tuned = embedded_pg.tune(info, "bench", restart=True)  # as `chaffee up` does
            with db.connect(info.url("bench")) as conn:
                build = writer.index_build_settings(n, args.dim)
                build_s = writer.build_index(conn, MODEL)
                conn.autocommit = True
                conn.execute("VACUUM ANALYZE")  # what autovacuum does after a bulk load
                conn.autocommit = False
                ids = [(vid_of(i // PER_VIDEO), i % PER_VIDEO) for i in range(n)]
                print(f"\n== {n:,} passages in {n // PER_VIDEO:,} videos: COPY {copy_s:.1f} s, HNSW build "
                      f"(m={writer.HNSW_M}, ef_construction={writer.HNSW_EF_CONSTRUCTION}) {build_s:.1f} s "
                      f"({build['maintenance_work_mem']} maintenance_work_mem, {build['max_parallel_maintenance_workers']} parallel workers); "
                      f"server settings changed: {tuned or 'none'}")
                kept_ms, old_ms = coverage_ms(conn)
                print(f"coverage read per query: kept {kept_ms:.2f} ms, per-video recount (before) {old_ms:.2f} ms")
                truth = truth_of(queries, allv, ids)
                run_queries(conn, queries[:20], truth[:20], 40)  # warm the index into memory
                print(f"{'ef_search':>9}  {'recall@10':>9}  {'p50 ms':>7}  {'p95 ms':>7}")
                chosen = None
                for ef in efs:
                    recall, p50, p95 = run_queries(conn, queries, truth, ef)
                    print(f"{ef:>9}  {recall:>9.3f}  {p50:>7.2f}  {p95:>7.2f}", flush=True)
                    if ef == search.DEFAULT_EF_SEARCH:
                        summary.append((n, "none", recall, p50, p95, kept_ms, old_ms))
                    if chosen is None and recall >= args.target:
                        chosen = ef
                print(f"smallest ef_search with recall@10 >= {args.target}: {chosen}")
                nq = min(100, len(queries))
                spk = np.array([speaker(int(v[2:]), o) for v, o in ids])
                for who, share in SPEAKERS.items():
                    idx = np.flatnonzero(spk == who)
                    recall, p50, p95 = run_queries(conn, queries[:nq], truth_of(queries[:nq], allv, ids, idx),
                                                   search.DEFAULT_EF_SEARCH, speaker=who.lower())
                    summary.append((n, f"speaker {who} ({share:.0%})", recall, p50, p95, kept_ms, old_ms))
                    print(f"speaker {who!r} ({share:.0%}, {len(idx):,} passages): recall@10 {recall:.3f}, p50 {p50:.2f} ms, p95 {p95:.2f} ms")
                idx = np.arange(PER_VIDEO)  # the first video
                recall, p50, p95 = run_queries(conn, queries[:nq], truth_of(queries[:nq], allv, ids, idx),
                                               search.DEFAULT_EF_SEARCH, video=vid_of(0))
                summary.append((n, "one video", recall, p50, p95, kept_ms, old_ms))
                print(f"video filter: recall@10 {recall:.3f}, p50 {p50:.2f} ms, p95 {p95:.2f} ms")
                print(f"exact search in Postgres (no index): p50 {exact_sql_ms(conn, queries, args.dim):.0f} ms")
    finally:
        embedded_pg.stop(tmp / "pgdata")
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nsummary at the default ef_search {search.DEFAULT_EF_SEARCH} (recall@10 against exact search)")
    print(f"{'passages':>9}  {'filter':<22} {'recall':>6}  {'p50 ms':>6}  {'p95 ms':>6}  {'coverage kept/before ms':>23}")
    for n, f, r, p50, p95, kept, old in summary:
        print(f"{n:>9,}  {f:<22} {r:>6.3f}  {p50:>6.2f}  {p95:>6.2f}  {kept:>10.2f} / {old:<10.2f}")


if __name__ == "__main__":
    main()
