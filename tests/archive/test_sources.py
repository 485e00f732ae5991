"""The source registry: one video, one id."""

from __future__ import annotations

import pytest

from chaffee_assets.archive import db, sources
from chaffee_assets.lib.errors import SourceConflict
from chaffee_assets.lib.ids import id_for_file, id_for_url
from chaffee_assets.lib.types import Source


@pytest.fixture
def conn(archive_url):
    with db.connect(archive_url) as c:
        yield c


def test_two_files_of_one_name_in_different_folders_are_two_videos(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "talk.mp3").write_bytes(b"first talk")
    (tmp_path / "b" / "talk.mp3").write_bytes(b"second talk")
    ids = {id_for_file(tmp_path / d / "talk.mp3") for d in "ab"}
    assert len(ids) == 2 and all(i.startswith("talk-") for i in ids)
    # the same file reached by another path is the same video
    (tmp_path / "c").symlink_to(tmp_path / "a")
    assert id_for_file(tmp_path / "c" / "talk.mp3") == id_for_file(tmp_path / "a" / "talk.mp3")


def test_the_direct_url_of_media_a_feed_listed_is_the_same_video(conn):
    feed_entry = Source("guid-123", "http://127.0.0.1:8000/talks/ep1.m4a", "Episode 1", "2024-01-01")
    direct = Source(id_for_url("http://127.0.0.1:8000/talks/ep1.m4a#t=5"), "http://127.0.0.1:8000/talks/ep1.m4a#t=5", origin="cli")
    assert sources.register(conn, [feed_entry]) == [feed_entry]
    [stored] = sources.register(conn, [direct])
    assert stored.video_id == "guid-123"  # recognised: the feed's id, not a second video
    assert conn.execute("SELECT count(*) FROM video_sources").fetchone()[0] == 1


def test_an_id_taken_by_another_source_is_refused_naming_both(conn):
    sources.register(conn, [Source("ep1", "http://127.0.0.1/a.m4a")])
    with pytest.raises(SourceConflict, match=r"ep1 already belongs to http://127.0.0.1/a.m4a; refusing http://127.0.0.1/b.m4a"):
        sources.register(conn, [Source("ep1", "http://127.0.0.1/b.m4a")])
    assert sources.lookup(conn, "ep1").url == "http://127.0.0.1/a.m4a"  # never re-pointed


def test_origin_is_kept_and_a_user_naming_it_makes_it_theirs(conn, tmp_path):
    sources.register(conn, [Source("s1", "http://127.0.0.1/x.m4a")])
    assert sources.lookup(conn, "s1").origin == "listing"
    sources.register(conn, [Source("s1", "http://127.0.0.1/x.m4a", origin="cli")])
    assert sources.lookup(conn, "s1").origin == "cli"
    sources.register(conn, [Source("s1", "http://127.0.0.1/x.m4a")])  # listed again: still the user's
    assert sources.lookup(conn, "s1").origin == "cli"
