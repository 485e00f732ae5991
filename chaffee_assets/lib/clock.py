"""Where a step's time goes: model loads and model calls, as wall-clock timestamps.

A step (a Dagster asset, or one stage of a benchmark) opens a `StepClock`; code that loads or runs
a model records into the clock that is current (a context variable, so a wrapper deep inside a
library call finds it without being passed along). Model calls nest: time inside an inner call
(ECAPA inside diarization) belongs to the inner model only, so the recorded intervals never
overlap and their union is the time some model was computing.

    with step_clock() as clock:
        with model_call("whisper"):
            transcriber.transcribe(audio)
    clock.summary()  # {"inference_seconds": …, "model_load_seconds": …, "timeline": {…}}

A load outside any clock (a model service warming up) is nobody's step: it is not recorded.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from chaffee_assets.lib.models import threads

Interval = tuple[str, float, float]  # (model, start, end), epoch seconds


@lru_cache(maxsize=1)
def process_started_at() -> float:
    """When this process was created (epoch seconds): the start of a run or step worker."""
    try:  # Linux: start time in clock ticks since boot, to 10 ms (psutil's boot time is whole seconds)
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        return time.time() - since_boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        try:
            import psutil

            return float(psutil.Process().create_time())
        except Exception:  # noqa: BLE001 - nothing better is known than now
            return time.time()


@dataclass
class StepClock:
    started_at: float = field(default_factory=time.time)
    intervals: list[Interval] = field(default_factory=list)
    loads: list[Interval] = field(default_factory=list)
    _stack: list[list[Any]] = field(default_factory=list)  # [model, segment start]

    # -- recording ----------------------------------------------------------------------------
    def enter(self, model: str) -> None:
        now = time.time()
        if self._stack:
            self._close_segment(self._stack[-1], now)
        self._stack.append([model, now])

    def exit(self) -> None:
        now = time.time()
        top = self._stack.pop()
        self._close_segment(top, now)
        if self._stack:
            self._stack[-1][1] = now

    def _close_segment(self, entry: list[Any], now: float) -> None:
        if now > entry[1]:
            self.intervals.append((entry[0], entry[1], now))

    def add_load(self, kind: str, start: float, end: float) -> None:
        self.loads.append((kind, start, end))

    # -- reading ------------------------------------------------------------------------------
    @property
    def inference_seconds(self) -> float:
        return sum(b - a for _, a, b in self.intervals)

    @property
    def load_seconds(self) -> float:
        return sum(b - a for _, a, b in self.loads)

    def seconds_by_model(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for m, a, b in self.intervals:
            out[m] = out.get(m, 0.0) + b - a
        return out

    def model_ready_at(self) -> float | None:
        """When the last model this step loaded was ready (None: nothing loaded here)."""
        return max((b for _, _, b in self.loads), default=None)

    def summary(self) -> dict[str, Any]:
        """Numbers for an operator, and a `timeline` (epoch seconds) for benchmarks and charts."""
        ended = time.time()
        return {
            "inference_seconds": round(self.inference_seconds, 3),
            "model_load_seconds": round(self.load_seconds, 3),
            "models_loaded": sorted({k for k, _, _ in self.loads}),
            "timeline": {
                "process_started_at": round(process_started_at(), 3),
                "body": [round(self.started_at, 3), round(ended, 3)],
                "loads": [[k, round(a, 3), round(b, 3)] for k, a, b in self.loads],
                "models": [[m, round(a, 3), round(b, 3)] for m, a, b in _merge(self.intervals)],
            },
        }


def _merge(intervals: list[Interval], gap: float = 0.001) -> list[Interval]:
    """Consecutive intervals of one model that touch become one (fewer entries to store)."""
    out: list[Interval] = []
    for m, a, b in intervals:
        if out and out[-1][0] == m and a - out[-1][2] <= gap:
            out[-1] = (m, out[-1][1], b)
        else:
            out.append((m, a, b))
    return out


_CURRENT: contextvars.ContextVar[StepClock | None] = contextvars.ContextVar("chaffee_step_clock", default=None)


def current() -> StepClock | None:
    return _CURRENT.get()


@contextmanager
def step_clock() -> Iterator[StepClock]:
    """A clock for one step (or one model service request)."""
    clock = StepClock()
    token = _CURRENT.set(clock)
    try:
        yield clock
    finally:
        _CURRENT.reset(token)


@contextmanager
def model_call(model: str) -> Iterator[None]:
    """A model computing: timed in the current clock (if any), and counted among the calls that
    share the machine's cores while it runs (`lib.threads.computing`, when sharing is on)."""
    with threads.computing():
        clock = _CURRENT.get()
        if clock is None:
            yield
            return
        clock.enter(model)
        try:
            yield
        finally:
            clock.exit()


def record_load(kind: str, start: float, end: float) -> None:
    """A model was built from `start` to `end` (epoch seconds)."""
    clock = _CURRENT.get()
    if clock is not None:
        clock.add_load(kind, start, end)
