"""A `chaffee` command running in the background for a test (its own process group), stopped and
reaped however the test ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def chaffee(args: list[str], env: dict[str, str], log_path: Path, stop_timeout_s: float = 60) -> Iterator[subprocess.Popen]:
    """`python -m chaffee_assets.app.cli ARGS…` with its output in `log_path` (for a failing test's
    reader); SIGTERM to its process group at the end, SIGKILL if it does not stop in time."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "chaffee_assets.app.cli", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
