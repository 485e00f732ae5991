"""Atomic file writes: a reader sees the old file or the new one, never half of one, and a failed
write (a full disk included) leaves nothing behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write(path: str | Path, data: bytes, mode: int = 0o644) -> Path:
    """Write `data` to `path` through a temporary sibling renamed into place (fsynced; `mode`
    before the rename, so a private file is never readable by others, not even for a moment)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
