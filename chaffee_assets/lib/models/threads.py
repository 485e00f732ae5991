"""How many CPU threads each model may use.

Every model library starts as many threads as it sees cores (CTranslate2 even 4 on any machine).
When several steps compute at once (ASR_WORKERS > 1), or one computes while other runs download,
decode and load, those threads outnumber the cores; OpenMP threads that spin-wait for each other
then make a model several times slower. One share of the cores per concurrent model avoids that:
fixed (`threads_per_model`), or following the models that compute right now (`CoreShare`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no sharing, fixed threads
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_model(setting: int, concurrent_models: int) -> int:
    """`setting` when > 0, else the cores divided among the models that may compute at once."""
    if setting > 0:
        return setting
    return max(1, available_cores() // max(1, concurrent_models))


def limit_torch_threads(n: int, level: int = logging.INFO) -> None:
    """torch's intra-op threads in this process (imports torch)."""
    import torch

    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
        log.log(level, "torch: %d intra-op threads", n)


# -- sharing the cores among the models computing now ----------------------------------------------
#
# A fixed share (cores ÷ pool limit) leaves cores idle whenever fewer models compute than the pool
# allows: a step storing its output, the next one starting, the last long interview computing alone
# at the end of a backfill. With sharing on, every model call registers itself on this machine (a
# locked file per call in one folder, so a crashed process never counts) and torch's threads follow
# the share: cores ÷ models computing now, re-read between batches of long calls.


class CoreShare:
    """The machine's cores, shared among the model calls computing on it right now."""

    def __init__(self, directory: Path | None = None, cores: int | None = None, interval_s: float = 0.5):
        self.directory = Path(directory) if directory else Path(tempfile.gettempdir()) / f"chaffee-cores-{_uid()}"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.cores = cores or available_cores()
        self.interval_s = interval_s
        self._local = threading.local()
        self._applied_at = 0.0

    def active(self) -> int:
        """Model calls computing on this machine now (this process's included)."""
        n = 0
        try:
            entries = list(self.directory.iterdir())
        except OSError:  # the folder was cleaned away: nobody registered
            return 0
        for p in entries:
            if p.name.startswith("."):
                continue
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue  # finished meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                n += 1  # its owner holds the lock: computing
            else:
                p.unlink(missing_ok=True)  # left by a process that died
            finally:
                os.close(fd)
        return n

    def share(self) -> int:
        return max(1, self.cores // max(1, self.active()))

    @contextmanager
    def computing(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth:  # a model call inside another (ECAPA inside diarization): one computation
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        name = f"{os.getpid()}-{threading.get_ident()}-{next(_SEQ)}"
        tmp = self.directory / f".{name}"
        fd = -1
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(tmp, self.directory / name)  # visible only once locked: never taken for a dead one
        except OSError as e:  # a registry that cannot be written never stops a model
            if fd >= 0:
                os.close(fd)
            log.warning("cores' share: cannot register in %s (%s); threads stay as they are", self.directory, e)
            yield
            return
        self._local.depth = 1
        try:
            self.apply(force=True)
            yield
        finally:
            self._local.depth = 0
            (self.directory / name).unlink(missing_ok=True)
            os.close(fd)

    def apply(self, force: bool = False) -> int | None:
        """Set torch's threads to the share now (at most every `interval_s` unless `force`)."""
        now = time.monotonic()
        if not force and now - self._applied_at < self.interval_s:
            return None
        self._applied_at = now
        n = self.share()
        if "torch" in sys.modules:  # a process without torch has no threads to set
            limit_torch_threads(n, logging.DEBUG)
        return n

    def rebalance(self) -> None:
        """Inside a model call of this thread: follow the share if it changed (rate-limited)."""
        if getattr(self._local, "depth", 0):
            self.apply()


_SEQ = itertools.count()
_SHARE: CoreShare | None = None


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "user"


def share_cores(directory: Path | None = None, cores: int | None = None, interval_s: float = 0.5) -> CoreShare | None:
    """Turn sharing on for this process (idempotent); None where file locks are unavailable."""
    global _SHARE
    if fcntl is None:
        log.info("no fcntl here: model threads stay fixed")
        return None
    if _SHARE is None or (directory is not None and _SHARE.directory != Path(directory)) or (cores and _SHARE.cores != cores):
        try:
            _SHARE = CoreShare(directory, cores, interval_s)
        except OSError as e:
            log.warning("cores' share unavailable (%s): model threads stay fixed", e)
            return None
        log.info("model threads follow the cores' share (%d cores, registry %s)", _SHARE.cores, _SHARE.directory)
    return _SHARE


def stop_sharing() -> None:
    global _SHARE
    _SHARE = None


def computing() -> contextlib.AbstractContextManager[None]:
    """A model computing: counted in the share while inside (a no-op when sharing is off)."""
    return _SHARE.computing() if _SHARE is not None else contextlib.nullcontext()


def rebalance() -> None:
    """Between batches of a long model call: follow the share if it changed."""
    if _SHARE is not None:
        _SHARE.rebalance()
