import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from chaffee_assets.archive import db, writer
from chaffee_assets.lib.errors import DatabaseError, VideoError
from chaffee_assets.lib.types import Passage, Passages, PassageVectors, VideoMeta

MODEL_A = "all-MiniLM-L6-v2"
MODEL_B = "it's a \"model\"; DROP TABLE videos; --"  # a model id is data, whatever it holds


def meta(vid: str, title: str = "A talk") -> VideoMeta:
    return VideoMeta(video_id=vid, title=title, source_url=f"https://www.youtube.com/watch?v={vid}", upload_date="2024-05-01", duration_s=600.0)


def passages(vid: str, n: int, speaker: str = "Chaffee", tag: str = "") -> Passages:
    return Passages(
        video_id=vid,
        passages=tuple(
            Passage(video_id=vid, ordinal=i, start=i * 7.25, end=i * 7.25 + 6.5, speaker=speaker, text=f"passage {i}{tag} of {vid}", n_words=4)
            for i in range(n)
        ),
    )


def vectors(vid: str, n: int, model: str = MODEL_A, dim: int = 8, seed: int = 0) -> PassageVectors:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return PassageVectors(video_id=vid, model=model, vectors=v / np.linalg.norm(v, axis=1, keepdims=True))


def stored_vectors(conn, vid: str, model: str) -> np.ndarray:
    rows = conn.execute(
        "SELECT embedding FROM segment_vectors WHERE video_id = %s AND model = %s ORDER BY ordinal", (vid, model)
    ).fetchall()
    conn.commit()
    return np.array([r[0].to_numpy() for r in rows])


@pytest.fixture
def conn(archive_url):
    with db.connect(archive_url) as c:
        yield c


def test_write_video_stores_rows_and_a_rerun_changes_nothing(conn):
    rc = writer.write_video(conn, meta("vid1"), passages("vid1", 5), vectors("vid1", 5))
    assert (rc.segments, rc.vectors, rc.segments_replaced, rc.vectors_replaced, rc.index_created) == (5, 5, True, True, True)
    writer.write_video(conn, meta("vid2"), passages("vid2", 3), vectors("vid2", 3, seed=1))
    before = writer.counts(conn)
    assert before == {"videos": 2, "segments": 8, "vectors": {MODEL_A: 8}}
    np.testing.assert_array_equal(stored_vectors(conn, "vid1", MODEL_A), vectors("vid1", 5).vectors)

    again = writer.write_video(conn, meta("vid1"), passages("vid1", 5), vectors("vid1", 5))
    assert (again.segments_replaced, again.vectors_replaced, again.index_created) == (False, False, False)
    assert writer.counts(conn) == before
    row = conn.execute("SELECT title, upload_date::text, duration_s FROM videos WHERE video_id = 'vid1'").fetchone()
    assert row == ("A talk", "2024-05-01", 600.0)
    assert writer.model_coverage(conn) == {MODEL_A: (2, 2)}
    assert writer.has_index(conn, MODEL_A)


def test_new_vectors_replace_only_that_videos_vectors(conn):
    writer.write_video(conn, meta("vid1"), passages("vid1", 4), vectors("vid1", 4))
    writer.write_video(conn, meta("vid2"), passages("vid2", 4), vectors("vid2", 4, seed=2))
    rc = writer.write_video(conn, meta("vid1"), passages("vid1", 4), vectors("vid1", 4, seed=9))
    assert (rc.segments_replaced, rc.vectors_replaced) == (False, True)
    np.testing.assert_array_equal(stored_vectors(conn, "vid1", MODEL_A), vectors("vid1", 4, seed=9).vectors)
    np.testing.assert_array_equal(stored_vectors(conn, "vid2", MODEL_A), vectors("vid2", 4, seed=2).vectors)


def test_a_new_model_keeps_segments_and_the_old_models_vectors(conn):
    writer.write_video(conn, meta("vid1"), passages("vid1", 4), vectors("vid1", 4))
    writer.write_video(conn, meta("vid2"), passages("vid2", 2), vectors("vid2", 2, seed=1))
    rc = writer.write_video(conn, meta("vid1"), passages("vid1", 4), vectors("vid1", 4, model=MODEL_B, dim=16))
    assert (rc.segments_replaced, rc.vectors_replaced, rc.index_created) == (False, True, True)
    assert writer.counts(conn) == {"videos": 2, "segments": 6, "vectors": {MODEL_A: 6, MODEL_B: 4}}
    assert writer.model_coverage(conn) == {MODEL_A: (2, 2), MODEL_B: (1, 2)}
    np.testing.assert_array_equal(stored_vectors(conn, "vid1", MODEL_A), vectors("vid1", 4).vectors)
    names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'segment_vectors'")}
    assert {writer.index_name(MODEL_A), writer.index_name(MODEL_B)} <= names
    assert conn.execute("SELECT count(*) FROM videos").fetchone()[0] == 2  # the id was data, not SQL


def test_changed_passages_replace_segments_and_drop_every_models_vectors(conn):
    writer.write_video(conn, meta("vid1"), passages("vid1", 4), vectors("vid1", 4))
    writer.write_video(conn, meta("vid1"), passages("vid1", 4), vectors("vid1", 4, model=MODEL_B))
    rc = writer.write_video(conn, meta("vid1"), passages("vid1", 3, tag="b"), vectors("vid1", 3, seed=5))
    assert (rc.segments_replaced, rc.vectors_replaced) == (True, True)
    assert writer.counts(conn) == {"videos": 1, "segments": 3, "vectors": {MODEL_A: 3, MODEL_B: 0}}
    assert writer.model_coverage(conn) == {MODEL_A: (1, 1), MODEL_B: (0, 1)}


def test_a_failure_mid_transaction_leaves_the_old_rows(conn, monkeypatch):
    writer.write_video(conn, meta("vid1", "Old title"), passages("vid1", 4), vectors("vid1", 4))
    before = writer.counts(conn)

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure after the segments were replaced")

    monkeypatch.setattr(writer, "copy_vectors", boom)
    with pytest.raises(RuntimeError, match="injected"):
        writer.write_video(conn, meta("vid1", "New title"), passages("vid1", 6, tag="x"), vectors("vid1", 6, seed=3))
    assert writer.counts(conn) == before
    assert conn.execute("SELECT title FROM videos WHERE video_id = 'vid1'").fetchone() == ("Old title",)
    assert conn.execute("SELECT text FROM segments WHERE video_id = 'vid1' AND ordinal = 0").fetchone() == ("passage 0 of vid1",)
    np.testing.assert_array_equal(stored_vectors(conn, "vid1", MODEL_A), vectors("vid1", 4).vectors)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_writer_leaves_the_old_rows(conn, archive_url):
    writer.write_video(conn, meta("vid1", "Old title"), passages("vid1", 4), vectors("vid1", 4))
    before = writer.counts(conn)
    script = textwrap.dedent(
        """
        import os, signal, sys
        from chaffee_assets.archive import db, writer
        from tests.archive.test_writer import meta, passages, vectors

        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)  # segments are replaced, vectors not yet written

        writer.copy_vectors = die
        with db.connect(sys.argv[1]) as conn:
            writer.write_video(conn, meta("vid1", "New title"), passages("vid1", 6, tag="x"), vectors("vid1", 6, seed=3))
        """
    )
    cwd = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    proc = subprocess.run([sys.executable, "-c", script, archive_url], cwd=cwd, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert writer.counts(conn) == before
    assert conn.execute("SELECT title FROM videos WHERE video_id = 'vid1'").fetchone() == ("Old title",)


def test_zero_passages_store_the_video_row_only(conn):
    empty = PassageVectors(video_id="vid0", model=MODEL_A, vectors=np.zeros((0, 384), np.float32))
    rc = writer.write_video(conn, meta("vid0"), passages("vid0", 0), empty)
    assert (rc.segments, rc.vectors) == (0, 0)
    assert writer.counts(conn) == {"videos": 1, "segments": 0, "vectors": {}}
    assert writer.model_coverage(conn) == {}


def test_upsert_meta_then_delete(conn):
    writer.upsert_video_meta(conn, meta("vid1", "Early"))
    writer.upsert_video_meta(conn, meta("vid1", "Later"))
    assert conn.execute("SELECT title FROM videos").fetchall() == [("Later",)]
    writer.write_video(conn, meta("vid1", "Later"), passages("vid1", 2), vectors("vid1", 2))
    assert writer.delete_video(conn, "vid1") is True
    assert writer.delete_video(conn, "vid1") is False
    assert writer.counts(conn) == {"videos": 0, "segments": 0, "vectors": {MODEL_A: 0}}


def test_bulk_load_builds_the_index_once_at_the_end(conn):
    items = [(meta(f"v{i}"), passages(f"v{i}", 3), vectors(f"v{i}", 3, seed=i)) for i in range(4)]
    out = writer.write_videos(conn, items)
    assert [rc.index_created for rc in out] == [False] * 4
    assert writer.has_index(conn, MODEL_A)
    valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (writer.index_name(MODEL_A),)).fetchone()
    assert valid == (True,)
    conn.commit()
    assert writer.build_index(conn, MODEL_A) == 0.0  # already there
    assert writer.counts(conn)["vectors"] == {MODEL_A: 12}


def test_bad_input_is_refused(conn):
    with pytest.raises(VideoError, match="3 passages"):
        writer.write_video(conn, meta("vid1"), passages("vid1", 3), vectors("vid1", 2))
    with pytest.raises(VideoError, match="must belong"):
        writer.write_video(conn, meta("vid1"), passages("vid2", 1), vectors("vid2", 1))
    writer.write_video(conn, meta("vid1"), passages("vid1", 2), vectors("vid1", 2, dim=8))
    with pytest.raises(DatabaseError, match="dimension 8"):
        writer.write_video(conn, meta("vid2"), passages("vid2", 2), vectors("vid2", 2, dim=16))
    assert writer.counts(conn) == {"videos": 1, "segments": 2, "vectors": {MODEL_A: 2}}


def recounted(conn) -> dict[str, tuple[int, int]]:
    """Coverage recomputed from the vectors themselves (what the kept counters must equal)."""
    total = conn.execute("SELECT count(DISTINCT video_id) FROM segments").fetchone()[0]
    rows = conn.execute(
        "SELECT m.model, (SELECT count(DISTINCT video_id) FROM segment_vectors v WHERE v.model = m.model) FROM embedding_models m"
    ).fetchall()
    conn.commit()
    return {m: (int(n), int(total)) for m, n in rows}


def test_kept_coverage_equals_a_recount_after_every_kind_of_write(conn, archive_url):
    steps = [
        lambda: writer.write_video(conn, meta("v1"), passages("v1", 3), vectors("v1", 3)),
        lambda: writer.write_video(conn, meta("v2"), passages("v2", 2), vectors("v2", 2)),
        lambda: writer.write_video(conn, meta("v1"), passages("v1", 3), vectors("v1", 3, model=MODEL_B, dim=16)),
        lambda: writer.write_video(conn, meta("v1"), passages("v1", 3), vectors("v1", 3, model=MODEL_B, dim=16)),  # a re-run
        lambda: writer.write_video(conn, meta("v1"), passages("v1", 4, tag="new"), vectors("v1", 4)),  # drops B's
        lambda: writer.write_video(conn, meta("v3"), passages("v3", 0), vectors("v3", 0)),  # no passages
        lambda: writer.write_video(conn, meta("v2"), passages("v2", 0), vectors("v2", 0)),  # passages gone
        lambda: writer.upsert_video_meta(conn, meta("v1", "Renamed")),
        lambda: writer.delete_video(conn, "v1"),
    ]
    for step in steps:
        step()
        assert writer.model_coverage(conn) == recounted(conn)
    # several writers at once on the same counters: no deadlock, no lost update
    from concurrent.futures import ThreadPoolExecutor

    def write(i: int) -> None:
        with db.connect(archive_url) as c:
            writer.write_video(c, meta(f"w{i}"), passages(f"w{i}", 2), vectors(f"w{i}", 2, seed=i))
            writer.write_video(c, meta(f"w{i}"), passages(f"w{i}", 2), vectors(f"w{i}", 2, model=MODEL_B, dim=16))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(write, range(12)))
    assert writer.model_coverage(conn) == recounted(conn) == {MODEL_A: (12, 12), MODEL_B: (12, 12)}
