"""A demo channel built from the fixture recordings: a few short media files, an RSS 2.0 feed,
and a loopback HTTP server to publish them. Used by tests, benchmarks and `chaffee` demos.

    items = build_demo_media(fixtures_dir, out_dir)          # media + feed.rss (file:// URLs)
    base_url, stop = serve(out_dir)                          # http://127.0.0.1:<port>
    write_feed(items, base_url, out_dir / "feed.rss")        # the same feed, served over HTTP
    ...  list_channel(f"{base_url}/feed.rss") ...
    stop()

Everything is deterministic: the same fixtures give byte-identical files and feed.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import io
import ipaddress
import logging
import shutil
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np

from chaffee_assets.lib.files import atomic_write
from chaffee_assets.lib.ids import validate_video_id
from chaffee_assets.lib.types import SAMPLE_RATE

log = logging.getLogger(__name__)

FEED_NAME = "feed.rss"
ITUNES_NS = "http://www.itunes.com/dtds/podcast-1.0.dtd"
_MIME = {".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".m4a": "audio/mp4",
         ".ogg": "audio/ogg", ".opus": "audio/ogg", ".webm": "audio/webm", ".mp4": "video/mp4",
         ".rss": "application/rss+xml", ".xml": "application/xml"}


@dataclass(frozen=True)
class DemoItem:
    """One video of a demo channel: a media file in the channel's folder and its feed fields."""

    video_id: str
    filename: str  # inside the channel folder
    title: str
    upload_date: str  # ISO date; published at 12:00 UTC that day
    duration_s: float = 0.0
    size_bytes: int = 0
    speakers: int = 1
    description: str = ""

    @property
    def mime_type(self) -> str:
        return _MIME.get(Path(self.filename).suffix.lower(), "application/octet-stream")

    @property
    def published(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.upload_date).replace(hour=12, tzinfo=dt.UTC)


def make_item(path: Path, video_id: str, title: str, upload_date: str, *, speakers: int = 1,
              description: str = "") -> DemoItem:
    """A DemoItem for a media file already written (size and duration read from it)."""
    from chaffee_assets.lib.media.decode import probe_duration

    validate_video_id(video_id)
    path = Path(path)
    return DemoItem(video_id=video_id, filename=path.name, title=title, upload_date=upload_date,
                    duration_s=round(probe_duration(path, video_id), 3), size_bytes=path.stat().st_size,
                    speakers=speakers, description=description)


def _write_audio(path: Path, wave: np.ndarray, fmt: str) -> None:
    import soundfile as sf

    sf.write(str(path), np.clip(wave, -1.0, 1.0), SAMPLE_RATE, format=fmt, subtype="PCM_16")


def monologue(speech: np.ndarray, repeats: int = 3, lead_s: float = 1.0, gap_s: float = 2.5,
              tail_s: float = 1.0) -> np.ndarray:
    """`speech` (16 kHz) said `repeats` times with pauses: a longer single-speaker talk."""
    silence = functools.partial(np.zeros, dtype=np.float32)
    parts: list[np.ndarray] = [silence(int(lead_s * SAMPLE_RATE))]
    for i in range(repeats):
        if i:
            parts.append(silence(int(gap_s * SAMPLE_RATE)))
        parts.append(speech.astype(np.float32))
    parts.append(silence(int(tail_s * SAMPLE_RATE)))
    return np.concatenate(parts)


def build_demo_media(fixtures_dir: Path, out_dir: Path, base_url: str | None = None) -> list[DemoItem]:
    """Write the demo channel's media and `feed.rss` into `out_dir`; return its items, oldest first.

    - demo-jfk-flac: jfk.flac as it is (11 s, 44.1 kHz stereo FLAC)
    - demo-jfk-wav: the same speech as 16 kHz mono WAV
    - demo-monologue: the speech three times with pauses (~40 s, 16 kHz mono FLAC), one speaker
    - demo-interview: sample.wav (30 s, two speakers on a phone line)
    The feed's enclosures point at `base_url` (default: the folder's file:// URL).
    """
    from chaffee_assets.lib.media.decode import decode_to_16k_mono

    fixtures_dir, out_dir = Path(fixtures_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jfk, sample = fixtures_dir / "jfk.flac", fixtures_dir / "sample.wav"
    for f in (jfk, sample):
        if not f.is_file():
            raise FileNotFoundError(f"fixture not found: {f}")
    speech = decode_to_16k_mono(jfk, "demo-jfk")

    shutil.copyfile(jfk, out_dir / "demo-jfk-flac.flac")
    _write_audio(out_dir / "demo-jfk-wav.wav", speech, "WAV")
    _write_audio(out_dir / "demo-monologue.flac", monologue(speech), "FLAC")
    shutil.copyfile(sample, out_dir / "demo-interview.wav")

    items = [
        make_item(out_dir / "demo-jfk-flac.flac", "demo-jfk-flac", "Ask not (FLAC)", "2024-01-01"),
        make_item(out_dir / "demo-jfk-wav.wav", "demo-jfk-wav", "Ask not (WAV)", "2024-01-02"),
        make_item(out_dir / "demo-monologue.flac", "demo-monologue", "A short monologue", "2024-01-03"),
        make_item(out_dir / "demo-interview.wav", "demo-interview", "An interview", "2024-01-04", speakers=2),
    ]
    write_feed(items, base_url or out_dir.resolve().as_uri(), out_dir / FEED_NAME)
    log.info("demo channel: %d items in %s", len(items), out_dir)
    return items


def write_feed(items: Sequence[DemoItem], base_url: str, path: Path, *, title: str = "Demo channel") -> Path:
    """Write an RSS 2.0 feed of `items` (listed newest first, as feeds do), atomically: a reader
    (or a server) sees the old feed or the new one. Rewrite it to add or remove items."""
    ET.register_namespace("itunes", ITUNES_NS)
    base = base_url.rstrip("/")
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    ET.SubElement(channel, "title").text = title
    ET.SubElement(channel, "link").text = base + "/"
    ET.SubElement(channel, "description").text = f"{title}: {len(items)} talks"
    for item in sorted(items, key=lambda i: (i.published, i.video_id), reverse=True):
        validate_video_id(item.video_id)
        node = ET.SubElement(channel, "item")
        ET.SubElement(node, "title").text = item.title
        ET.SubElement(node, "guid", {"isPermaLink": "false"}).text = item.video_id
        ET.SubElement(node, "pubDate").text = format_datetime(item.published)
        if item.description:
            ET.SubElement(node, "description").text = item.description
        ET.SubElement(node, "enclosure", {"url": f"{base}/{quote(item.filename)}",
                                          "length": str(item.size_bytes), "type": item.mime_type})
        if item.duration_s:
            ET.SubElement(node, f"{{{ITUNES_NS}}}duration").text = str(int(round(item.duration_s)))
    buf = io.BytesIO()
    ET.ElementTree(rss).write(buf, encoding="utf-8", xml_declaration=True)
    return atomic_write(path, buf.getvalue())


# -- serving ------------------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **_MIME}

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        log.debug("demo server: %s " + format, self.address_string(), *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:  # a client hung up
        log.debug("demo server: error serving %s", client_address, exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(directory: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve `directory` over HTTP on loopback in a daemon thread; return (base URL, stop)."""
    if not _is_loopback(host):
        raise ValueError(f"the demo server binds loopback only, not {host!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"not a folder: {directory}")
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = (_Server6 if ":" in host else _Server)((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="demo-channel-server",
                              daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    url_host = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    base_url = f"http://{url_host}:{bound_port}"
    log.info("demo server: %s serves %s", base_url, directory)
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return base_url, stop
