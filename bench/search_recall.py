"""Search benchmark: HNSW recall@10 and latency vs hnsw.ef_search, and COPY cost with/without the index.

Runs on a fresh embedded Postgres (PostgreSQL 18 + pgvector) in a temporary folder, with the
project's own schema, write path (`store`) and query path (`search.search`):

1. `--n` 384-d vectors (default 100 000) in videos of 200 passages: segments and vectors loaded by
   binary COPY into segment_vectors while the model has no index (the bulk first-load path).
2. 20 more videos written with `writer.write_video` without the index, then the HNSW index built
   (`writer.build_index`), then 20 more videos written with the index: per-video and per-vector cost.
3. `--queries` queries (default 200) through `search.search` for each ef_search: recall@10 against
   exact (brute-force) search, latency p50/p95; plus exact search in Postgres for comparison.

The vectors are synthetic but clustered like real passage embeddings, not uniform noise: 50 topics,
20 sub-topics each (1 000 clusters), points spread around their sub-topic so that same-topic
cosines are ~0.3–0.6 and unrelated ones ~0 (MiniLM passages look alike). Queries are fresh points
from the same distribution, so they are not in the table. Uniform random vectors would be a far
harsher (and unrealistic) test for HNSW; real embeddings of 100 000 passages would take ~20 minutes
to compute on 2 CPU cores (MiniLM ~100 passages/s).

    python bench/search_recall.py [--n 100000] [--queries 200] [--ef 10,20,40,64,100,200]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from chaffee_assets.archive import db, search, writer
from chaffee_assets.instance import embedded_pg
from chaffee_assets.lib.types import Passage, Passages, PassageVectors, VideoMeta

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


GUEST = "Guest 1"  # 1 % of passages: a selective speaker filter


def speaker(ordinal: int) -> str:
    return GUEST if ordinal % 100 == 7 else "Chaffee"


def passages(vid: str, n: int) -> Passages:
    return Passages(vid, tuple(Passage(vid, i, i * 10.0, i * 10.0 + 9, speaker(i), f"synthetic passage {i} of {vid}", 5) for i in range(n)))


def meta(vid: str) -> VideoMeta:
    return VideoMeta(video_id=vid, title=f"Talk {vid}", source_url=f"https://www.youtube.com/watch?v={vid}")


def bulk_load(conn, vecs: np.ndarray, n_videos: int) -> tuple[float, float]:
    """Videos and segments, then vectors by binary COPY (no index): (segments s, vectors s)."""
    t0 = time.perf_counter()
    with conn.transaction():
        conn.execute("INSERT INTO embedding_models (model, dim) VALUES (%s, %s)", (MODEL, vecs.shape[1]))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO videos (video_id, title, source_url) VALUES (%s, %s, %s)",
                            [(m.video_id, m.title, m.source_url) for m in (meta(f"bv{v:05d}") for v in range(n_videos))])
            with cur.copy("COPY segments (video_id, ordinal, start_s, end_s, speaker, text) FROM STDIN WITH (FORMAT BINARY)") as cp:
                cp.set_types(["text", "int4", "float8", "float8", "text", "text"])
                for v in range(n_videos):
                    for p in passages(f"bv{v:05d}", PER_VIDEO).passages:
                        cp.write_row((p.video_id, p.ordinal, p.start, p.end, p.speaker, p.text))
    t1 = time.perf_counter()
    with conn.transaction():
        for v in range(n_videos):
            writer.copy_vectors(conn, f"bv{v:05d}", MODEL, vecs[v * PER_VIDEO : (v + 1) * PER_VIDEO])
    return t1 - t0, time.perf_counter() - t1


def write_videos(conn, rng, centers, prefix: str, count: int, ensure_index: bool) -> tuple[float, np.ndarray]:
    """`count` videos through writer.write_video; (seconds per video, their vectors)."""
    all_vecs, t0 = [], time.perf_counter()
    for v in range(count):
        vid = f"{prefix}{v:03d}"
        vecs = clustered(rng, PER_VIDEO, centers.shape[1], centers)
        writer.write_video(conn, meta(vid), passages(vid, PER_VIDEO), PassageVectors(vid, MODEL, vecs), ensure_index=ensure_index)
        all_vecs.append(vecs)
    return (time.perf_counter() - t0) / count, np.concatenate(all_vecs)


def run_queries(conn, queries: np.ndarray, truth: list[set], ef: int, who: str | None = None) -> tuple[float, float, float]:
    lookup = {f"q{i}": q for i, q in enumerate(queries)}
    recalls, lat = [], []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        hits = search.search(conn, lookup.__getitem__, f"q{i}", k=K, model=MODEL, ef_search=ef, speaker=who)
        lat.append(time.perf_counter() - t0)
        got = {(h.video_id, int(round(h.start / 10))) for h in hits}
        recalls.append(len(got & truth[i]) / K)
    lat_ms = np.array(lat) * 1000
    return float(np.mean(recalls)), float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 95))


def exact_sql_latency(conn, queries: np.ndarray, dim: int, truth: list[set], n: int = 20) -> tuple[float, float]:
    q = (f"SELECT video_id, ordinal FROM segment_vectors WHERE model = %s "
         f"ORDER BY embedding::vector({dim}) <=> %s LIMIT {K}")
    lat, recalls = [], []
    for i in range(min(n, len(queries))):
        t0 = time.perf_counter()
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            rows = conn.execute(q, (MODEL, queries[i]), prepare=False).fetchall()
        lat.append(time.perf_counter() - t0)
        recalls.append(len(set(rows) & truth[i]) / K)
    return float(np.percentile(np.array(lat) * 1000, 50)), float(np.mean(recalls))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors loaded before the index is built")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--ef", default="10,20,40,64,80,100,128,200")
    ap.add_argument("--videos-written", type=int, default=20, help="videos written by write_video with and without the index")
    ap.add_argument("--target", type=float, default=0.95, help="recall@10 the chosen ef_search must reach")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rng = np.random.default_rng(args.seed)
    centers = make_centers(rng, args.dim)
    n_videos = max(1, args.n // PER_VIDEO)
    base = clustered(rng, n_videos * PER_VIDEO, args.dim, centers)

    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    info = embedded_pg.start(tmp / "pgdata")
    try:
        db.ensure_database(info.url(), "bench")
        db.migrate(info.url("bench"))
        with db.connect(info.url("bench")) as conn:
            seg_s, vec_s = bulk_load(conn, base, n_videos)
            print(f"bulk load, no index: {len(base)} segments {seg_s:.1f} s; {len(base)} vectors by binary COPY "
                  f"{vec_s:.1f} s ({len(base) / vec_s:,.0f}/s, {vec_s / len(base) * 1e3:.3f} ms/vector)")
            no_idx, v1 = write_videos(conn, rng, centers, "wa", args.videos_written, ensure_index=False)
            build_s = writer.build_index(conn, MODEL)
            with_idx, v2 = write_videos(conn, rng, centers, "wb", args.videos_written, ensure_index=True)
            total = len(base) + len(v1) + len(v2)
            print(f"HNSW build (m=16, ef_construction=64, CONCURRENTLY) over {len(base) + len(v1)} vectors: {build_s:.1f} s")
            print(f"write_video, {PER_VIDEO} passages per video: {no_idx * 1e3:.0f} ms/video without the index, "
                  f"{with_idx * 1e3:.0f} ms/video with it ({with_idx / PER_VIDEO * 1e3:.2f} ms/vector; "
                  f"x{with_idx / no_idx:.0f}); the same {len(base)} vectors loaded one by one into the index "
                  f"would take ~{with_idx / PER_VIDEO * len(base):.0f} s vs COPY + build {vec_s + build_s:.0f} s")
            conn.execute("ANALYZE segment_vectors")
            conn.commit()

            ids = [(f"bv{v:05d}", i) for v in range(n_videos) for i in range(PER_VIDEO)]
            ids += [(f"wa{v:03d}", i) for v in range(args.videos_written) for i in range(PER_VIDEO)]
            ids += [(f"wb{v:03d}", i) for v in range(args.videos_written) for i in range(PER_VIDEO)]
            allv = np.concatenate([base, v1, v2])
            queries = clustered(rng, args.queries, args.dim, centers)
            top = np.argsort(-(queries @ allv.T), axis=1)[:, :K]
            truth = [{ids[j] for j in row} for row in top]

            exact_p50, exact_recall = exact_sql_latency(conn, queries, args.dim, truth)
            run_queries(conn, queries[:20], truth[:20], 40)  # warm the index into memory
            print(f"\n{total} vectors, {args.queries} queries, k={K}; exact search in Postgres: p50 {exact_p50:.0f} ms "
                  f"(recall {exact_recall:.2f} vs numpy)\n")
            print(f"{'ef_search':>9}  {'recall@10':>9}  {'p50 ms':>7}  {'p95 ms':>7}")
            chosen = None
            for ef in [int(x) for x in args.ef.split(",")]:
                recall, p50, p95 = run_queries(conn, queries, truth, ef)
                print(f"{ef:>9}  {recall:>9.3f}  {p50:>7.2f}  {p95:>7.2f}", flush=True)
                if chosen is None and recall >= args.target:
                    chosen = ef
            guest = np.array([speaker(o) == GUEST for _, o in ids])
            gidx = np.flatnonzero(guest)
            gtop = gidx[np.argsort(-(queries[:100] @ allv[gidx].T), axis=1)[:, :K]]
            gtruth = [{ids[j] for j in row} for row in gtop]
            recall, p50, p95 = run_queries(conn, queries[:100], gtruth, search.DEFAULT_EF_SEARCH, who=GUEST.lower())
            print(f"speaker filter '{GUEST}' (1 % of passages), ef_search {search.DEFAULT_EF_SEARCH}, 100 queries: "
                  f"recall@10 {recall:.3f}, p50 {p50:.2f} ms, p95 {p95:.2f} ms")
            print(f"\nchosen default ef_search: {chosen} (smallest with recall@10 >= {args.target}); "
                  f"search.DEFAULT_EF_SEARCH = {search.DEFAULT_EF_SEARCH}")
    finally:
        embedded_pg.stop(tmp / "pgdata")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
