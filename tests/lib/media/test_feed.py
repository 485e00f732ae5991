"""Listing a channel: the demo channel's RSS feed over loopback HTTP and file://, rewritten feeds,
feeds without guids or dates, YouTube-shaped listings, and broken or unreachable feeds."""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaffee_assets.lib.errors import FeedError
from chaffee_assets.lib.ids import is_valid_video_id
from chaffee_assets.lib.media.download import fetch_audio
from chaffee_assets.lib.media.feed import list_channel
from chaffee_assets.lib.types import Source
from chaffee_assets.testing.demo_channel import DemoItem, build_demo_media, make_item, serve, write_feed
from tests.helpers.media_server import MediaServer

DEMO_IDS = ["demo-jfk-flac", "demo-jfk-wav", "demo-monologue", "demo-interview"]


@pytest.fixture(scope="module")
def demo(fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[DemoItem], str]]:
    folder = tmp_path_factory.mktemp("demo")
    items = build_demo_media(fixtures_dir, folder)
    base_url, stop = serve(folder)
    write_feed(items, base_url, folder / "http.rss")
    yield folder, items, base_url
    stop()


def test_demo_media(demo, fixtures_dir: Path, tmp_path: Path) -> None:
    folder, items, _ = demo
    assert [i.video_id for i in items] == DEMO_IDS
    assert [round(i.duration_s) for i in items] == [11, 11, 40, 30]
    assert [i.speakers for i in items] == [1, 1, 1, 2]
    assert all((folder / i.filename).stat().st_size == i.size_bytes for i in items)
    again = build_demo_media(fixtures_dir, tmp_path)  # deterministic
    assert again == items
    assert all((folder / i.filename).read_bytes() == (tmp_path / i.filename).read_bytes() for i in items)
    channel = ET.parse(folder / "feed.rss").getroot().find("channel")
    assert channel is not None
    feed_items = channel.findall("item")
    assert [it.findtext("guid") for it in feed_items] == DEMO_IDS[::-1]  # newest first
    for it in feed_items:
        assert it.findtext("title") and it.findtext("pubDate")
        enclosure = it.find("enclosure")
        assert enclosure is not None and enclosure.get("url", "").startswith(folder.resolve().as_uri())


def test_http_feed_oldest_first_with_stable_ids(demo) -> None:
    _, items, base_url = demo
    entries = list_channel(f"{base_url}/http.rss")
    assert entries == [
        Source(i.video_id, f"{base_url}/{i.filename}", i.title, i.upload_date) for i in items
    ]
    assert list_channel(f"{base_url}/http.rss") == entries


@pytest.mark.parametrize("as_url", [True, False], ids=["file-url", "path"])
def test_a_local_feed_file_named_by_the_user_is_listed(demo, as_url: bool) -> None:
    folder, items, base_url = demo
    feed = folder / "http.rss"  # a local file, its enclosures on the web
    entries = list_channel(feed.as_uri() if as_url else str(feed))
    assert [e.video_id for e in entries] == DEMO_IDS
    assert entries[2].url == f"{base_url}/demo-monologue.flac"


def test_entries_naming_local_files_are_refused_and_the_others_listed(demo, caplog) -> None:
    """A feed can name any URL: an enclosure pointing at this machine's files (file://, a path) or
    at another scheme is refused, whatever the feed, and never read."""
    folder, items, base_url = demo
    local = [DemoItem("local-one", "/etc/hostname", "Local", "2024-02-01")]
    mixed = folder / "mixed.rss"
    write_feed(items[:2], base_url, mixed)
    text = mixed.read_text().replace("</channel>", (
        "<item><title>Sneaky</title><guid>sneaky</guid><pubDate>Mon, 05 Feb 2024 12:00:00 +0000</pubDate>"
        '<enclosure url="file:///etc/hostname" length="1" type="audio/mpeg"/></item>'
        "<item><title>Odd</title><guid>odd</guid><pubDate>Mon, 05 Feb 2024 12:00:00 +0000</pubDate>"
        '<enclosure url="ftp://127.0.0.1/a.mp3" length="1" type="audio/mpeg"/></item></channel>'))
    mixed.write_text(text)
    with caplog.at_level(logging.WARNING, logger="chaffee_assets.lib.media.feed"):
        entries = list_channel(f"{base_url}/mixed.rss")
    assert [e.video_id for e in entries] == DEMO_IDS[:2]
    assert "sneaky" in caplog.text and "odd" in caplog.text and "refused" in caplog.text
    assert local  # (a DemoItem naming a local path is only test data; nothing read it)


def test_a_trickling_feed_server_fails_the_listing_by_its_deadline(fixtures_dir: Path, tmp_path: Path) -> None:
    from tests.helpers.media_server import MediaServer

    feed = ET.tostring(ET.Element("rss")) * 400
    with MediaServer() as server:
        url = server.add("/slow.rss", feed, "application/rss+xml", trickle=(256, 0.5))
        t0 = time.monotonic()
        with pytest.raises(FeedError, match=r"not finished after 2 s"):
            list_channel(url, deadline_s=2.0)
    assert time.monotonic() - t0 < 15


def test_listed_entry_downloads(demo, tmp_path: Path) -> None:
    _, _, base_url = demo
    entry = next(e for e in list_channel(f"{base_url}/http.rss") if e.video_id == "demo-monologue")
    audio = fetch_audio(entry.url, entry.video_id, tmp_path, title=entry.title, upload_date=entry.upload_date)
    assert audio.seconds == pytest.approx(40.0)
    assert (audio.meta.title, audio.meta.upload_date, audio.meta.source_url) == (
        "A short monologue", "2024-01-03", entry.url)


def test_rewritten_feed_adds_and_removes(demo) -> None:
    folder, items, base_url = demo
    feed = folder / "rewrite.rss"
    write_feed(items[:2], base_url, feed)
    assert [e.video_id for e in list_channel(f"{base_url}/rewrite.rss")] == DEMO_IDS[:2]
    new = make_item(folder / "demo-interview.wav", "new-upload", "A new upload", "2024-02-01", speakers=2)
    write_feed([items[1], new], base_url, feed)  # the first video removed, a new one published
    entries = list_channel(f"{base_url}/rewrite.rss")
    assert [e.video_id for e in entries] == ["demo-jfk-wav", "new-upload"]
    assert entries[-1].upload_date == "2024-02-01" and not list(folder.glob(".rewrite.rss*"))


def _rss(*items: str) -> bytes:
    return ('<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            + "".join(items) + "</channel></rss>").encode()


def _item(title: str, enclosure: str, guid: str | None = None, date: str | None = None) -> str:
    return (f"<item><title>{title}</title>" + (f"<guid>{guid}</guid>" if guid else "")
            + (f"<pubDate>{date}</pubDate>" if date else "")
            + f'<enclosure url="{enclosure}" type="audio/flac" length="1"/></item>')


def test_feed_without_guids_or_dates_and_untrusted_guids() -> None:
    with MediaServer() as srv:
        url = srv.add("/f.rss", _rss(
            _item("Newest", "media/c.flac"),  # relative enclosure, no guid, no date
            _item("Middle", "http://cdn.example/b.flac", guid="../../etc/passwd"),
            _item("Oldest", "http://cdn.example/a.flac", guid="https://example.org/?p=1"),
        ), "application/rss+xml")
        first, second = list_channel(url), list_channel(url)
    assert first == second  # stable ids
    assert [e.title for e in first] == ["Oldest", "Middle", "Newest"]  # feed order reversed
    assert all(is_valid_video_id(e.video_id) and e.upload_date is None for e in first)
    assert len({e.video_id for e in first}) == 3
    assert first[2].url == url.rsplit("/", 1)[0] + "/media/c.flac"


def test_dates_order_the_feed() -> None:
    with MediaServer() as srv:
        url = srv.add("/f.rss", _rss(
            _item("B", "b.flac", "ep-b", "Tue, 02 Jan 2024 10:00:00 +0000"),
            _item("C", "c.flac", "ep-c", "Wed, 03 Jan 2024 10:00:00 +0000"),  # out of order
            _item("A", "a.flac", "ep-a", "Mon, 01 Jan 2024 10:00:00 +0000"),
            _item("A again", "a2.flac", "ep-a", "Mon, 01 Jan 2024 10:00:00 +0000"),  # duplicate guid
        ), "application/rss+xml")
        entries = list_channel(url)
    assert [(e.video_id, e.upload_date) for e in entries] == [
        ("ep-a", "2024-01-01"), ("ep-b", "2024-01-02"), ("ep-c", "2024-01-03")]


def test_youtube_shaped_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """What yt-dlp's YouTube tab extractor gives in flat mode (newest first, no dates)."""
    import yt_dlp

    def fake_extract(self, url, download=True, **kw):  # noqa: ANN001
        assert self.params["extract_flat"] == "in_playlist"
        return {"_type": "playlist", "id": "UCxyz", "entries": [
            {"_type": "url", "ie_key": "Youtube", "id": "bbbbbbbbbbb", "title": "Newer",
             "url": "https://www.youtube.com/watch?v=bbbbbbbbbbb", "duration": 5400.0},
            {"_type": "url", "ie_key": "Youtube", "id": "aaaaaaaaaaa", "title": "Older",
             "url": "https://www.youtube.com/shorts/aaaaaaaaaaa", "duration": 4800.0},
        ]}

    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", fake_extract)
    entries = list_channel("https://www.youtube.com/@anthonychaffeemd/videos")
    assert entries == [
        Source("aaaaaaaaaaa", "https://www.youtube.com/watch?v=aaaaaaaaaaa", "Older"),
        Source("bbbbbbbbbbb", "https://www.youtube.com/watch?v=bbbbbbbbbbb", "Newer"),
    ]


def test_channel_tabs_only_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import yt_dlp

    tabs = {"_type": "playlist", "id": "UCxyz", "entries": [
        {"_type": "url", "ie_key": "YoutubeTab", "id": "UCxyz", "url": "https://www.youtube.com/@x/videos"}]}
    monkeypatch.setattr(yt_dlp.YoutubeDL, "extract_info", lambda self, url, download=True, **kw: tabs)
    with pytest.raises(FeedError, match="/videos"):
        list_channel("https://www.youtube.com/@x")


@pytest.mark.parametrize(
    ("body", "ctype", "match"),
    [
        (b'<?xml version="1.0"?><rss version="2.0"><channel><title>x</title><item><title>a</ti', "application/rss+xml",
         "malformed feed"),
        (b"this is not a feed", "text/plain", "not a feed or channel"),
    ],
    ids=["broken-xml", "not-xml"],
)
def test_malformed_feed(body: bytes, ctype: str, match: str) -> None:
    with MediaServer() as srv:
        url = srv.add("/bad.rss", body, ctype)
        with pytest.raises(FeedError, match=match) as err:
            list_channel(url)
    assert url in str(err.value)


def test_unreachable_feed(tmp_path: Path) -> None:
    with MediaServer() as srv:
        missing = srv.url("/missing.rss")
        with pytest.raises(FeedError, match="404"):
            list_channel(missing)
    with pytest.raises(FeedError, match="Connection refused|connect"):
        list_channel(missing)  # the server is gone
    with pytest.raises(FeedError, match="not a URL, nor an existing feed file"):
        list_channel(str(tmp_path / "absent.rss"))


def test_serve_is_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve(tmp_path, host="0.0.0.0")
