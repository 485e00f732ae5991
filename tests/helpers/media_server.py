"""A loopback HTTP server for download tests: serves files and canned bodies, injects failures
(404, 503 once, HTML instead of media) and records every request it answers."""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200
    # statuses for the first requests, in order (200: serve the body); then the body every time
    fail_first: list[int] = field(default_factory=list)
    trickle: tuple[int, float] | None = None  # (bytes, seconds): the body sent that slowly
    ranges: bool = False  # answer `Range: bytes=a-b` with 206 (what a browser needs to seek)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int


class MediaServer:
    """`with MediaServer() as srv:` — `srv.add_file("/a.flac", path)`, `srv.url("/a.flac")`,
    `srv.count("/a.flac")`. Unknown paths answer 404. Binds 127.0.0.1 only."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- routes -------------------------------------------------------------------------------
    def add(self, path: str, body: bytes, content_type: str = "application/octet-stream", *,
            status: int = 200, fail_first: list[int] | None = None, trickle: tuple[int, float] | None = None,
            ranges: bool = False) -> str:
        self.routes[path] = Route(body, content_type, status, list(fail_first or []), trickle, ranges)
        return self.url(path)

    def add_file(self, path: str, file: Path, content_type: str = "application/octet-stream", **kw) -> str:
        return self.add(path, Path(file).read_bytes(), content_type, **kw)

    def url(self, path: str) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def count(self, path: str, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path and (method is None or r.method == method))

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> MediaServer:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def _answer(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path)
                route = server.routes.get(path)
                status, body, ctype = 404, b"<html><body>not found</body></html>", "text/html"
                if route is not None:
                    with server._lock:
                        failing = route.fail_first.pop(0) if route.fail_first else None
                    if failing is not None and failing != 200:
                        status, body, ctype = failing, f"<html>error {failing}</html>".encode(), "text/html"
                    else:
                        status, body, ctype = route.status, route.body, route.content_type
                extra = {}
                wanted = self.headers.get("Range", "")
                if route is not None and route.ranges and status == 200:
                    extra["Accept-Ranges"] = "bytes"
                    if wanted.startswith("bytes=") and "," not in wanted:
                        first, _, last = wanted[6:].partition("-")
                        a = int(first or 0)
                        b = min(int(last) if last else len(body) - 1, len(body) - 1)
                        extra["Content-Range"] = f"bytes {a}-{b}/{len(body)}"
                        status, body = 206, body[a : b + 1]
                with server._lock:
                    server.requests.append(Request(self.command, path, status))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    try:
                        self._send(body, route.trickle if route is not None and status == 200 else None)
                    except (BrokenPipeError, ConnectionResetError):  # the client read only a prefix
                        pass

            def _send(self, body: bytes, trickle: tuple[int, float] | None) -> None:
                if trickle is None:
                    self.wfile.write(body)
                    return
                size, every = trickle
                for i in range(0, len(body), size):
                    self.wfile.write(body[i : i + size])
                    self.wfile.flush()
                    time.sleep(every)

            def handle(self) -> None:
                try:
                    super().handle()
                except (ConnectionResetError, BrokenPipeError):  # the client hung up on keep-alive
                    pass

            def do_GET(self) -> None:  # noqa: N802
                self._answer(head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(head=True)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="media-server",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


# -- media makers (PyAV, in process) ------------------------------------------------------------
def encode_audio(wave, sample_rate: int, path: Path, codec: str, rate: int = 48_000,
                 layout: str = "stereo", container_format: str | None = None) -> Path:
    """Encode a mono float32 waveform with PyAV (e.g. libopus in .webm, aac in .m4a, like YouTube)."""
    import av
    import numpy as np

    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        ctx = stream.codec_context
        resampler = av.AudioResampler(format=ctx.format, layout=ctx.layout, rate=rate,
                                      frame_size=ctx.frame_size or 1024)
        frame = av.AudioFrame.from_ndarray(np.asarray(wave, np.float32).reshape(1, -1), format="flt",
                                           layout="mono")
        frame.sample_rate = sample_rate
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return path


def make_video_only(path: Path, frames: int = 5) -> Path:
    """A tiny valid Matroska file with one MJPEG video stream and no audio."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuvj420p"
        for i in range(frames):
            img = np.full((32, 32, 3), i * 40, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))
    return path
