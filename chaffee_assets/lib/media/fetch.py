"""Where a source may point, and fetching within bounds.

- Schemes: `http` and `https` for anything a listing (a feed, a channel, the sensor) names; local
  files (a path or `file://`) only when the user named them on the command line. Anything else is
  refused before any request, and a refusal never says whether a local path exists.
- Bounds: every fetch has an overall deadline and a maximum size; a server that stalls or trickles
  fails the video (or the listing) with a clear error instead of holding it for ever.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

REMOTE_SCHEMES = ("http", "https")
CHUNK = 64 << 10


class SourceRefused(ValueError):
    """A source this project does not fetch from where it came from (see the module docstring)."""


def is_local(source: str) -> bool:
    """A file:// URL, or a plain path (no scheme: `./a:b.mp3` is a path, `data:…` is not)."""
    scheme = urlsplit(source).scheme.lower()
    return scheme in ("file", "")


def check_source(source: str, allow_local: bool) -> None:
    """Raise SourceRefused unless `source` may be fetched (before anything touches it)."""
    if is_local(source):
        if not allow_local:
            raise SourceRefused(
                "refused: local files are read only when named on the command line (`chaffee ingest FILE`), "
                "never from a feed, a channel or the sensor"
            )
        return
    scheme = urlsplit(source).scheme.lower()
    if scheme not in REMOTE_SCHEMES:
        raise SourceRefused(f"refused: {scheme}:// sources are not fetched (only http, https, and local files named on the command line)")


class Bounds:
    """An overall deadline and a size cap for one fetch; `check` raises TimeoutError / OverflowError."""

    def __init__(self, deadline_s: float, max_bytes: int):
        self.deadline_s, self.max_bytes = deadline_s, max_bytes
        self.started = time.monotonic()

    def check(self, received: int) -> None:
        elapsed = time.monotonic() - self.started
        if received > self.max_bytes:
            raise OverflowError(f"larger than the {self.max_bytes / 2**20:.1f} MiB allowed (MAX_DOWNLOAD_BYTES)")
        if elapsed > self.deadline_s:
            raise TimeoutError(f"not finished after {self.deadline_s:.0f} s ({received / 2**20:.1f} MiB received)")


def fetch_bounded(url: str, target: Path, deadline_s: float, max_bytes: int, socket_timeout_s: float = 30.0) -> int:
    """Download `url` (http/https) into `target` within the bounds; bytes written. A partial file is
    removed on every failure."""
    check_source(url, allow_local=False)
    bounds = Bounds(deadline_s, max_bytes)
    received = 0
    try:
        request = Request(url, headers={"User-Agent": "chaffee_assets"})
        with urlopen(request, timeout=socket_timeout_s) as response, open(target, "wb") as out:  # noqa: S310 - scheme checked
            length = response.headers.get("Content-Length")
            if length and length.isdigit():
                bounds.check(int(length))
            while chunk := response.read1(CHUNK):  # whatever has arrived: a trickle is seen at once
                received += len(chunk)
                bounds.check(received)
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return received
