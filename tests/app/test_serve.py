"""`chaffee serve`: the search page and its JSON endpoint, as a real process on the session's
model service and a real archive, and the page in headless Chromium (typing a query)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from chaffee_assets.archive import db, writer
from chaffee_assets.lib.types import Passage, Passages, PassageVectors, VideoMeta
from tests.helpers.browser import Browser, chromium
from tests.helpers.instances import make_settings
from tests.helpers.media_server import MediaServer
from tests.helpers.processes import chaffee, free_port

OUT = Path(__file__).resolve().parents[2] / "bench" / "out"
ASK_NOT = "ask not what your country can do for you, ask what you can do for your country."
TALKS = {  # video id → (title, upload date, passages as (start, end, speaker, text))
    "jfk-inaugural": ("Inaugural address", "1961-01-20", [
        (0.3, 3.2, "John F. Kennedy", "And so, my fellow Americans,"),
        (3.6, 10.5, "John F. Kennedy", ASK_NOT),
    ]),
    "ketones-talk": ("Ketones and the brain", "2024-03-01", [
        (12.0, 30.0, "Chaffee", "Ketones are a clean fuel for the brain when you stop eating carbohydrates."),
        (95.0, 120.0, "Guest 1", "I slept better within a week of eating only meat."),
    ]),
    "local-talk": ("A talk from a file", None, [
        (1.0, 5.0, "Chaffee", "Fibre is not needed for a healthy gut, the studies say otherwise than you were told."),
    ]),
}
YOUTUBE_ID = "abcdefghijk"




def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def page(pg_server, fixtures_dir, tmp_path_factory, model_service):
    """Three talks stored (their passages embedded by the model service), `chaffee serve` on them."""
    from chaffee_assets.lib.models.client import ModelClient
    from tests.helpers.instances import new_database

    folder = tmp_path_factory.mktemp("serve")
    settings = make_settings(folder, new_database(pg_server), ray_address=model_service)
    local = folder / "local talk.flac"
    shutil.copyfile(fixtures_dir / "jfk.flac", local)
    with MediaServer() as media:
        sources = {"jfk-inaugural": media.add_file("/jfk.flac", fixtures_dir / "jfk.flac", "audio/flac", ranges=True),
                   "ketones-talk": f"https://www.youtube.com/watch?v={YOUTUBE_ID}", "local-talk": str(local)}
        with ModelClient(model_service) as client, db.connect(settings.database_url) as conn:
            for vid, (title, date, rows) in TALKS.items():
                ps = Passages(vid, tuple(Passage(vid, i, s, e, spk, text, len(text.split())) for i, (s, e, spk, text) in enumerate(rows)))
                vecs = np.asarray(client.call("embed_texts", [p.text for p in ps.passages], "minilm").value, np.float32)
                meta = VideoMeta(video_id=vid, title=title, source_url=sources[vid], upload_date=date, duration_s=130.0)
                writer.write_video(conn, meta, ps, PassageVectors(vid, "all-MiniLM-L6-v2", vecs))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with chaffee(["serve", "--port", str(port)], {**os.environ, **settings.to_environment()}, folder / "serve.log",
                     stop_timeout_s=30) as proc:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if _get(base + "/")[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"chaffee serve did not answer: {(folder / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.5)
            yield base, sources


def _search(base: str, **params) -> tuple[int, dict]:
    status, body = _get(f"{base}/api/search?{urllib.parse.urlencode(params)}")
    return status, json.loads(body)


def test_the_json_endpoint_ranks_passages_with_speaker_date_and_a_player_at_the_second(page):
    base, sources = page
    status, out = _search(base, q="what can I do for my country", k=3)
    assert status == 200
    top = out["hits"][0]
    assert (top["video_id"], top["text"], top["speaker"], top["upload_date"]) == ("jfk-inaugural", ASK_NOT, "John F. Kennedy", "1961-01-20")
    assert top["player"] == {"kind": "audio", "src": sources["jfk-inaugural"] + "#t=3.6"}
    assert [h["score"] for h in out["hits"]] == sorted((h["score"] for h in out["hits"]), reverse=True)

    status, out = _search(base, q="ketones as fuel for the brain", k=5)
    yt = next(h for h in out["hits"] if h["video_id"] == "ketones-talk")
    assert yt["player"] == {"kind": "youtube", "src": f"https://www.youtube-nocookie.com/embed/{YOUTUBE_ID}?start=12"}
    assert yt["url"] == f"https://www.youtube.com/watch?v={YOUTUBE_ID}&t=12s"

    _, out = _search(base, q="sleep and diet", k=5, speaker="guest 1")
    assert [h["speaker"] for h in out["hits"]] == ["Guest 1"]
    _, out = _search(base, q="sleep and diet", k=5, video="local-talk")
    assert {h["video_id"] for h in out["hits"]} == {"local-talk"}
    assert out["hits"][0]["player"] == {"kind": "audio", "src": "/media/local-talk#t=1"}

    assert _search(base, q="  ")[0] == 400 and "empty query" in _search(base, q="")[1]["error"]
    status, out = _search(base, q="country", k="many")
    assert status == 400 and "whole number" in out["error"]
    status, out = _search(base, q="country", video="../etc/passwd")
    assert status == 400 and "video id" in out["error"].lower()


def test_the_page_works_without_javascript_and_serves_local_media(page, fixtures_dir):
    base, _ = page
    status, html = _get(f"{base}/?q={urllib.parse.quote('fellow Americans')}&speaker=John+F.+Kennedy")
    text = html.decode()
    assert status == 200
    assert "And so, my fellow Americans," in text and "Inaugural address" in text and "1961-01-20" in text
    assert "3 videos searchable · model all-MiniLM-L6-v2" in text  # the model search answers from
    assert 'data-src="' in text and "<option value=\"John F. Kennedy\">" in text  # the speaker filter's choices
    status, html = _get(f"{base}/?q={urllib.parse.quote('<script>alert(1)</script>')}")
    assert status == 200 and "<script>alert(1)</script>" not in html.decode()  # the query is escaped
    status, body = _get(f"{base}/media/local-talk")
    assert status == 200 and body == (fixtures_dir / "jfk.flac").read_bytes()
    assert _get(f"{base}/media/jfk-inaugural")[0] == 404  # not a local file: played from its own URL
    assert _get(f"{base}/media/no-such-video")[0] == 404


@pytest.mark.skipif(chromium() is None, reason="no Chromium on this machine (apt install chromium)")
def test_a_query_typed_in_chromium_shows_the_passage_and_the_player_starts_there(page):
    base, sources = page
    with Browser() as b:
        b.goto(base + "/")
        b.type("#q", "what you can do for your country")
        b.press("Enter")
        b.wait_for("document.querySelectorAll('li.hit').length > 0")
        first = b.eval("document.querySelector('li.hit .text').textContent")
        assert first == ASK_NOT
        assert b.eval("document.querySelector('li.hit .meta').textContent").split()[:4] == ["John", "F.", "Kennedy", "·"]
        assert b.eval("document.querySelector('#player audio').getAttribute('src')") == sources["jfk-inaugural"] + "#t=3.6"
        # the media element itself is at the passage's second once its metadata is in
        now = b.wait_for("(v => v.readyState >= 1 && v.currentTime)(document.querySelector('#player audio'))")
        assert abs(now - 3.6) < 0.05
        b.screenshot(OUT / "search_page.png")
        # a YouTube hit plays in YouTube's embed from its second
        b.goto(base + "/?q=" + urllib.parse.quote("ketones fuel the brain"))
        b.eval("[...document.querySelectorAll('li.hit')].find(li => li.textContent.includes('Ketones')).querySelector('button.play').click()")
        assert b.eval("document.querySelector('#player iframe').src") == f"https://www.youtube-nocookie.com/embed/{YOUTUBE_ID}?start=12"
    assert (OUT / "search_page.png").stat().st_size > 10_000
