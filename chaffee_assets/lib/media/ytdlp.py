"""yt-dlp's logger protocol onto `logging`, for downloads and listings alike: every line tagged
with what it is about ("video <id>", "feed <url>"), errors left to the caller (re-raised as our own
errors with the cause), and the generic extractor's harmless warnings kept at DEBUG."""

from __future__ import annotations

import logging

log = logging.getLogger("chaffee_assets.lib.media")

NOISY_WARNINGS = ("generic information extractor", "could be a direct video link")


class YtdlpLogger:
    def __init__(self, about: str):
        self.about = about  # "video <id>" or "feed <url>"

    def debug(self, msg: str) -> None:
        log.debug("%s: yt-dlp: %s", self.about, msg)

    info = debug
    error = debug  # re-raised as DownloadError / FeedError with the cause

    def warning(self, msg: str) -> None:
        level = logging.DEBUG if any(w in msg for w in NOISY_WARNINGS) else logging.WARNING
        log.log(level, "%s: yt-dlp: %s", self.about, msg)
