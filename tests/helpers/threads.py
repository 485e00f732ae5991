"""A call in a thread of its own whose answer, or exception, the test reads afterwards."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any


class Background:
    """`fn()` started in a daemon thread; `answer()` after it: its return value, or an
    AssertionError carrying the thread's own traceback (a thread's exception is not the test's)."""

    def __init__(self, fn: Callable[[], Any]):
        self._value: Any = None
        self._error: str | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._value = fn()
        except BaseException:  # noqa: BLE001 - handed to the test
            self._error = traceback.format_exc()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def answer(self, timeout: float) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout:.0f} s"
        assert self._error is None, f"the thread failed:\n{self._error}"
        return self._value
