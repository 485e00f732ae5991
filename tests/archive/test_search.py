import logging
import re
import zlib

import numpy as np
import pytest

from chaffee_assets.archive import db, search, writer
from chaffee_assets.lib.errors import InvalidVideoId, SearchError
from chaffee_assets.lib.types import Passage, Passages, PassageVectors, SearchHit, VideoMeta

MINILM = "all-MiniLM-L6-v2"

# video id -> (title, source, [(speaker, text), ...]); passage i starts at 65 * i + 5 seconds
ARCHIVE = {
    "yt_video_01": ("Plants and meat", "https://www.youtube.com/watch?v=yt_video_01", [
        ("Chaffee", "Plants produce defence chemicals like oxalates and lectins to deter animals from eating them."),
        ("Chaffee", "Red meat is the most nutrient dense food and contains every essential amino acid."),
        ("Guest 1", "My arthritis went away within a month after I stopped eating vegetables."),
    ]),
    "media_02": ("Sleep and the sun", "https://example.org/talks/sleep.mp3", [
        ("Chaffee", "Sunlight exposure in the morning sets the circadian rhythm and improves sleep quality."),
        ("Guest 1", "I used to wake up at three in the morning every night before changing my diet."),
    ]),
    "local_03": ("Cholesterol Q&A", "/data/talks/local 03.mp4", [
        ("Chaffee", "LDL cholesterol is not the cause of heart disease according to these trials."),
        ("Host B", "Insulin resistance drives fat storage and metabolic disease."),
    ]),
}


class BagOfWords:
    """A fast, deterministic stand-in for a text model: each word a fixed random direction."""

    def __init__(self, model_id: str = "test-bow", dim: int = 64, seed: int = 0):
        self.model_id, self.dim, self.seed = model_id, dim, seed

    def _word(self, w: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(w.encode()) + self.seed).normal(size=self.dim)

    def embed_query(self, text: str) -> np.ndarray:
        words = re.findall(r"\w+", text.lower()) or ["<empty>"]
        v = sum(self._word(w) for w in words)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def vectors(self, passages: Passages) -> PassageVectors:
        v = np.array([self.embed_query(p.text) for p in passages.passages], dtype=np.float32).reshape(-1, self.dim)
        return PassageVectors(video_id=passages.video_id, model=self.model_id, vectors=v)


def archive_passages(vid: str) -> tuple[VideoMeta, Passages]:
    title, source, rows = ARCHIVE[vid]
    meta = VideoMeta(video_id=vid, title=title, source_url=source, duration_s=600)
    ps = tuple(
        Passage(video_id=vid, ordinal=i, start=65.0 * i + 5.5, end=65.0 * i + 12.0, speaker=s, text=t, n_words=len(t.split()))
        for i, (s, t) in enumerate(rows)
    )
    return meta, Passages(video_id=vid, passages=ps)


def write(conn, embed, vids=tuple(ARCHIVE)) -> None:
    for vid in vids:
        meta, ps = archive_passages(vid)
        pv = embed.vectors(ps) if isinstance(embed, BagOfWords) else embed.embed_videos({vid: ps})[vid]
        writer.write_video(conn, meta, ps, pv)


@pytest.fixture
def conn(archive_url):
    with db.connect(archive_url) as c:
        yield c


@pytest.fixture
def bow_conn(conn):
    write(conn, BagOfWords())
    return conn


@pytest.fixture(scope="module")
def minilm(runtime):
    from chaffee_assets.lib.models.text_embed import TextEmbedder

    return TextEmbedder("minilm", runtime, batch_size=8)


# -- the right passage, filters, bad input ---------------------------------------------------------


@pytest.mark.slow
def test_finds_the_right_passage_with_minilm(conn, minilm):
    write(conn, minilm)
    hits = search.search(conn, minilm, "why are vegetables harmful? plant toxins", k=3)
    assert hits[0].text.startswith("Plants produce defence chemicals")
    assert hits[0].url == "https://www.youtube.com/watch?v=yt_video_01&t=5s"
    assert 0 < hits[0].score <= 1 and hits[0].score >= hits[1].score >= hits[2].score
    hits = search.search(conn, minilm, "what time does the sun help me sleep", k=1)
    assert (hits[0].video_id, hits[0].title, hits[0].speaker) == ("media_02", "Sleep and the sun", "Chaffee")
    assert search.search(conn, minilm, "meat protein " * 770, k=2)  # a 10 010-character query


def test_filters_by_speaker_case_insensitively_and_by_video(bow_conn):
    embed = BagOfWords()
    hits = search.search(bow_conn, embed, "morning sleep", k=10, speaker="guest 1")
    assert {h.speaker for h in hits} == {"Guest 1"} and len(hits) == 2
    assert hits[0].text.startswith("I used to wake up")
    hits = search.search(bow_conn, embed, "disease", k=10, video="local_03")
    assert {h.video_id for h in hits} == {"local_03"} and len(hits) == 2
    hits = search.search(bow_conn, embed, "disease", k=10, video="local_03", speaker="HOST B")
    assert [h.speaker for h in hits] == ["Host B"]
    assert search.search(bow_conn, embed, "disease", video="no_such_video") == []
    assert len(search.search(bow_conn, embed, "the", k=3)) == 3


def test_bad_input(bow_conn):
    embed = BagOfWords()
    for q in ("", "   \n\t"):
        with pytest.raises(SearchError, match="empty query"):
            search.search(bow_conn, embed, q)
    with pytest.raises(InvalidVideoId):
        search.search(bow_conn, embed, "meat", video="x' OR '1'='1")
    with pytest.raises(SearchError, match="k must be"):
        search.search(bow_conn, embed, "meat", k=0)
    with pytest.raises(SearchError, match="dimensions"):
        search.search(bow_conn, lambda q: np.ones(3), "meat", model="test-bow")
    long_hits = search.search(bow_conn, embed, "x" * 10_000, k=1)
    assert len(long_hits) == 1


def test_sql_metacharacters_have_no_effect(bow_conn):
    embed = BagOfWords()
    before = writer.counts(bow_conn)
    hits = search.search(bow_conn, embed, "'; DROP TABLE segments; -- red meat \\ \" %s %(q)s", k=2)
    assert hits[0].text.startswith("Red meat")
    assert search.search(bow_conn, embed, "meat", speaker="x' OR '1'='1") == []
    assert search.search(bow_conn, embed, "meat", speaker="%") == []
    with pytest.raises(SearchError, match="has no vectors"):
        search.search(bow_conn, embed.embed_query, "meat", model="test-bow' OR '1'='1")
    assert writer.counts(bow_conn) == before


def test_the_query_uses_the_models_hnsw_index(bow_conn):
    q = search._knn_sql("test-bow", 64, None, None, exact=False)
    with bow_conn.transaction():
        for knob in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):  # make the tiny table use an index
            bow_conn.execute(f"SET LOCAL {knob} = off")
        plan = "\n".join(r[0] for r in bow_conn.execute(
            q.as_string(bow_conn).replace("%(q)s", "%(q)s::vector").join(["EXPLAIN ", ""]),
            {"q": np.ones(64, np.float32), "k": 5, "speaker": None, "video": None}, prepare=False,
        ))
    assert writer.index_name("test-bow") in plan, plan


# -- which model answers ---------------------------------------------------------------------------


def test_choose_model_waits_for_full_coverage(conn):
    a, b = BagOfWords("model-a"), BagOfWords("model-b", seed=7)
    with pytest.raises(SearchError, match=r"model-b.*chaffee ingest"):
        search.choose_model(conn, "model-b")
    write(conn, a, ["yt_video_01", "media_02"])
    write(conn, b, ["yt_video_01"])
    assert search.choose_model(conn, "model-b") == "model-a"
    assert search.choose_model(conn, "model-a") == "model-a"
    write(conn, b, ["media_02"])
    assert search.choose_model(conn, "model-b") == "model-b"
    assert search.choose_model(conn, "model-a") == "model-a"  # also complete
    assert search.choose_model(conn, "unknown") == "model-b"  # the most recent complete one
    meta, ps = archive_passages("local_03")  # a new video covered by model-a only
    writer.write_video(conn, meta, ps, a.vectors(ps))
    assert search.choose_model(conn, "model-b") == "model-a"


@pytest.mark.slow
def test_search_answers_from_the_complete_model_until_the_new_one_covers_all(conn, minilm, caplog):
    write(conn, minilm, ["yt_video_01", "media_02"])
    new = BagOfWords("new-model")
    write(conn, new, ["yt_video_01"])
    with caplog.at_level(logging.INFO, logger="chaffee_assets.archive.search"):
        hits = search.search(conn, new, "plants defence chemicals", k=1, encoder_for={MINILM: minilm.embed_query}.__getitem__)
    assert f"with {MINILM}" in caplog.text  # the configured model is incomplete: MiniLM answers
    assert hits[0].text.startswith("Plants produce")
    write(conn, new, ["media_02"])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="chaffee_assets.archive.search"):
        hits = search.search(conn, new, "plants defence chemicals", k=1)
    assert "with new-model" in caplog.text and hits[0].text.startswith("Plants produce")
    assert writer.counts(conn)["vectors"] == {MINILM: 5, "new-model": 5}


# -- links and terminal output ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "start", "url"),
    [
        ("https://www.youtube.com/watch?v=abcDEF12345", 75.9, "https://www.youtube.com/watch?v=abcDEF12345&t=75s"),
        ("https://youtu.be/abcDEF12345?si=x", 3.0, "https://www.youtube.com/watch?v=abcDEF12345&t=3s"),
        ("https://example.org/a.mp3", 12.5, "https://example.org/a.mp3#t=12.5"),
        ("https://example.org/a.mp3#t=1", 7.0, "https://example.org/a.mp3#t=7"),
        ("file:///data/a%20b.mp4", 61.25, "file:///data/a%20b.mp4#t=61.2"),
        ("/data/talks/local 03.mp4", 5.5, "file:///data/talks/local%2003.mp4#t=5.5"),
    ],
)
def test_links_open_the_media_at_the_second(source, start, url):
    assert search.hit_url(source, "vid", start) == url


def test_format_hits():
    hit = SearchHit(score=0.8123, video_id="v", title="A talk", speaker="Chaffee", start=3725.2, end=3790.0,
                    text="Meat is good.", url="https://www.youtube.com/watch?v=v&t=3725s")
    out = search.format_hits([hit])
    assert "0.812" in out and "Chaffee" in out and "A talk" in out and "1:02:05–1:03:10" in out
    assert "Meat is good." in out and "&t=3725s" in out
    assert search.format_hits([]) == "no matching passages"
