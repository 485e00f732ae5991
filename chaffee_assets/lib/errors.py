"""Exception types raised by `chaffee_assets.lib`; each message names the video and the cause."""

from __future__ import annotations


class ChaffeeError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidVideoId(ChaffeeError, ValueError):
    pass


class VideoError(ChaffeeError):
    """A problem with one video: carries its id, so a message always names it."""

    def __init__(self, video_id: str, cause: str):
        self.video_id = video_id
        self.cause = cause
        super().__init__(f"video {video_id}: {cause}")


class DownloadError(VideoError):
    """The media could not be fetched. `transient` errors are worth retrying."""

    def __init__(self, video_id: str, cause: str, transient: bool = False):
        self.transient = transient
        super().__init__(video_id, cause)


class DecodeError(VideoError):
    """The media was fetched but holds no decodable audio."""


class FeedError(ChaffeeError):
    """A channel or feed could not be listed."""


class ModelNotFound(ChaffeeError):
    """An unknown model alias or a path that holds no model."""


class VoiceProfileError(ChaffeeError):
    pass


class SearchError(ChaffeeError):
    pass


class DatabaseError(ChaffeeError):
    """A database failure; `transient`: the server was unreachable or went away (worth retrying)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class DeviceUnavailable(ChaffeeError, ValueError):
    """An unknown `DEVICE` setting, or `cuda` asked for where torch sees no GPU."""


class ServiceUnavailable(ChaffeeError):
    """The model service did not answer (not started, restarting, its head gone) within the grace time."""


class RunFailed(ChaffeeError):
    """A run submitted from the command line failed (the message names what and why)."""


class SourceConflict(ChaffeeError):
    """A video id already registered for another source."""


def is_database_outage(e: BaseException) -> bool:
    """Whether `e` (or what caused it) is a database that cannot be reached or went away: psycopg's
    and SQLAlchemy's OperationalError, or ours for it (a transient DatabaseError)."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DatabaseError) and e.transient:
            return True
        if type(e).__name__ == "OperationalError" and type(e).__module__.startswith(("sqlalchemy", "psycopg")):
            return True
        e = e.__cause__ or e.__context__
    return False
