"""How many CPU threads each model may use, in the one process that owns the cores (a model
service replica).

Every model library starts as many threads as it sees cores (CTranslate2 even 4 on any machine).
When several calls compute at once (two transcriptions, pyannote beside the text embedder), those
threads outnumber the cores; OpenMP threads that spin-wait for each other then make a model several
times slower. CTranslate2's threads are fixed when whisper loads (`threads_per_model`); torch's
follow the calls computing in this process right now (`CoreShare`): the cores divided by them,
re-read between the batches of long calls (pyannote, ECAPA). Measured with the earlier cross-process
version of this share (bench/README.md): 2.39 -> 2.72 audio h/h on the interview corpus, the last
interview's pyannote taking both cores once nothing else computes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


class CoreShare:
    """The process's cores, shared among the model calls computing in it right now."""

    def __init__(self, cores: int | None = None, interval_s: float = 0.5):
        self.cores = cores or available_cores()
        self.interval_s = interval_s
        self._active = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._applied_at = 0.0

    def active(self) -> int:
        """Model calls computing in this process now."""
        return self._active

    def share(self) -> int:
        return max(1, self.cores // max(1, self._active))

    @contextmanager
    def computing(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        if depth:  # a model call inside another (ECAPA inside diarization): one computation
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._lock:
            self._active += 1
        try:
            self.apply(force=True)
            yield
        finally:
            self._local.depth = 0
            with self._lock:
                self._active -= 1

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


_SHARE: CoreShare | None = None


def share_cores(cores: int | None = None, interval_s: float = 0.5) -> CoreShare:
    """Turn sharing on for this process (idempotent for the same number of cores)."""
    global _SHARE
    if _SHARE is None or (cores and _SHARE.cores != cores) or _SHARE.interval_s != interval_s:
        _SHARE = CoreShare(cores, interval_s)
        log.info("model threads follow the share of %d cores among the calls computing", _SHARE.cores)
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
