"""Standing the project up on one machine: the embedded Postgres (or DATABASE_URL), the archive
database and its migrations, Dagster's storage database, DAGSTER_HOME/dagster.yaml and the
workspace file the UI, the daemon and `chaffee ingest` load the code location from.

The state folder holds a database and, with DATABASE_URL, a password in dagster.yaml: it is made
private (0700; 0711 when running as root, where the embedded server runs as its own system user and
must traverse it), and every file written here that may hold a secret is 0600.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from chaffee_assets.archive import db
from chaffee_assets.instance import embedded_pg, model_service
from chaffee_assets.instance.dagster_internals import HEARTBEAT_S, clear_orphans, daemon_alive, silent_daemons
from chaffee_assets.instance.dagster_yaml import merge_dagster_yaml
from chaffee_assets.lib.errors import ChaffeeError
from chaffee_assets.settings import Settings

log = logging.getLogger(__name__)

ARCHIVE_DB = "chaffee"
DAGSTER_DB = "dagster"
CODE_LOCATION = "chaffee_assets"
WORKSPACE = f"""# Written by `chaffee up`: the code location the UI, the daemon and `chaffee ingest` load.
load_from:
  - python_module:
      module_name: chaffee_assets.definitions
      location_name: {CODE_LOCATION}
"""


@dataclass(frozen=True)
class Up:
    archive_url: str
    dagster_url: str
    dagster_home: Path
    embedded: bool
    started_seconds: float
    migrations_applied: list[str]
    service_address: str | None = None  # the model service's Ray cluster (None: not asked for)
    service_seconds: float = 0.0
    orphans_cleared: tuple[str, ...] = ()  # runs left in progress by a process that no longer exists


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def archive_url(settings: Settings) -> str:
    """The archive database: DATABASE_URL, else the embedded server's (its unix socket, read from the
    running server; where it is not running, the socket it will have in its data folder)."""
    if settings.database_url:
        return settings.database_url
    info = embedded_pg.running(settings.pg_data_dir)
    if info is None:
        data = settings.pg_data_dir.resolve()
        info = embedded_pg.ServerInfo(data, 0, str(data))
    return info.url(ARCHIVE_DB)


def dagster_storage_url(settings: Settings, archive: str) -> str:
    # Dagster's tables (runs, event_logs, …) do not collide with ours, but one machine keeps them apart.
    if settings.database_url:
        return settings.dagster_database_url or archive
    return _with_database(archive, DAGSTER_DB)


def private_folder(path: Path) -> Path:
    """`path` made (if missing) and readable by its owner only (see the module docstring)."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid():
        path.chmod(0o711 if os.geteuid() == 0 else 0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically with mode 0600 (a reader sees the old file or the new)."""
    from chaffee_assets.lib.files import atomic_write

    atomic_write(path, text.encode(), mode=0o600)
    return path


def write_dagster_yaml(settings: Settings, dagster_url: str) -> Path:
    """DAGSTER_HOME/dagster.yaml: the project's keys set, the user's kept (`dagster_yaml.py`)."""
    home = private_folder(settings.dagster_home)
    path = home / "dagster.yaml"
    current = path.read_text() if path.exists() else None
    text = merge_dagster_yaml(current, settings, dagster_url)
    if text != current or (path.stat().st_mode & 0o077):
        write_private(path, text)
    return path


def write_workspace(settings: Settings) -> Path:
    path = private_folder(settings.dagster_home) / "workspace.yaml"
    if not path.exists() or path.read_text() != WORKSPACE:
        write_private(path, WORKSPACE)
    return path


@contextmanager
def dagster_instance(settings: Settings) -> Iterator:
    """The project's Dagster instance (DAGSTER_HOME in the state folder)."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        yield instance


def set_pool_limits(settings: Settings) -> dict[str, int]:
    """The `gpu` pool's limit is ASR_WORKERS (honoured across runs)."""
    with dagster_instance(settings) as instance:
        instance.event_log_storage.set_concurrency_slots("gpu", settings.asr_workers)
    return {"gpu": settings.asr_workers}


def up(settings: Settings, service: bool = True) -> Up:
    """Start or reuse everything (the model service too, unless `service` is False); idempotent."""
    t0 = time.perf_counter()
    private_folder(settings.state_path)
    if settings.database_url:
        archive = settings.database_url
        embedded = False
    else:
        was_running = embedded_pg.running(settings.pg_data_dir) is not None
        info = embedded_pg.start(settings.pg_data_dir)
        private_folder(settings.state_path)  # the server's start opens the folders above its data
        db.ensure_database(info.url(), ARCHIVE_DB)
        db.ensure_database(info.url(), DAGSTER_DB)
        archive = info.url(ARCHIVE_DB)
        embedded = True
    started = time.perf_counter() - t0
    applied = db.migrate(archive)
    if embedded:  # memory sized from the archive as it is now; a restart only if we just started it
        embedded_pg.tune(info, ARCHIVE_DB, restart=not was_running)
    dagster_url = dagster_storage_url(settings, archive)
    write_dagster_yaml(settings, dagster_url)
    write_workspace(settings)
    set_pool_limits(settings)
    with dagster_instance(settings) as instance:
        orphans = tuple(clear_orphans(instance))
    address, service_seconds = model_service.up(settings) if service else (None, 0.0)
    return Up(archive, dagster_url, settings.dagster_home, embedded, started, applied, address, service_seconds, orphans)


def down(settings: Settings) -> dict[str, bool]:
    """Stop what `up` started here: {"model service": stopped, "database": stopped}."""
    return {
        "model service": model_service.down(settings),
        "database": False if settings.database_url else embedded_pg.stop(settings.pg_data_dir),
    }


class Daemon:
    """The dagster-daemon a CLI ingest needs: the one running already (`chaffee dev`'s), else one
    started here in its own session for as long as the ingest follows its runs (stopped, with the
    runs it launched, at the end; its heartbeats wiped, so the next ingest does not take a stopped
    daemon for a live one).

    One started here is also replaced when it hangs: its process alive but a thread the ingest
    relies on (queue, run monitoring, run retries) silent for `hung_s` of the checks' own time. A
    gap between checks (a database outage: nobody can beat then) starts the count again."""

    def __init__(self, settings: Settings, timeout_s: float = 180.0, hung_s: float = 120.0):
        self.settings, self.timeout_s, self.hung_s = settings, timeout_s, hung_s
        self.proc: Any = None
        self.logfile = settings.state_path / "daemon.log"
        self._silent_since: dict[str, float] = {}
        self._checked = self._started_at = 0.0

    def ensure(self, instance) -> str | None:
        """Start one unless one runs (here or elsewhere): why it was started now, else None."""
        if self.proc is not None and self.proc.poll() is None:
            hung = self._hung(instance)
            if not hung:
                return None
            why = (f"its {', '.join(hung)} thread{'s' if len(hung) > 1 else ''} sent no heartbeat for over "
                   f"{2 * HEARTBEAT_S + self.hung_s:.0f} s")
            log.warning("dagster-daemon (pid %d): %s; replacing it", self.proc.pid, why)
        elif daemon_alive(instance):
            return None
        else:
            why = "started" if self.proc is None else "the one running had stopped"
        if self.proc is not None:  # ours, gone or hung: what it started may still be there
            end_process_group(self.proc.pid)
        self._start(instance)
        return why

    def _hung(self, instance) -> list[str]:
        now = time.monotonic()
        if now - self._checked > HEARTBEAT_S:
            self._silent_since.clear()
        self._checked = now
        silent = silent_daemons(instance, self._started_at)
        self._silent_since = {n: self._silent_since.get(n, now) for n in silent}
        return sorted(n for n, since in self._silent_since.items() if now - since >= self.hung_s)

    def _start(self, instance) -> None:
        import subprocess
        import sys

        env = {**os.environ, **self.settings.to_environment(), "DAGSTER_HOME": str(self.settings.dagster_home)}
        argv = [sys.executable, "-m", "dagster._daemon", "run", "-w", str(write_workspace(self.settings))]
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(["env", "--default-signal=INT,TERM", *argv], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self._silent_since, self._checked, self._started_at = {}, 0.0, time.time()
        deadline = time.monotonic() + self.timeout_s
        while not daemon_alive(instance):
            if self.proc.poll() is not None:
                raise ChaffeeError(f"dagster-daemon exited with {self.proc.returncode}; see {self.logfile}")
            if time.monotonic() > deadline:
                raise ChaffeeError(f"dagster-daemon not running after {self.timeout_s:.0f} s; see {self.logfile}")
            time.sleep(0.5)

    def stop(self, instance) -> None:
        import signal
        import subprocess

        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        end_process_group(self.proc.pid)  # its code servers, when their own shutdown hangs
        self.proc = None
        instance.wipe_daemon_heartbeats()


def end_process_group(pgid: int, grace_s: float = 10.0) -> None:
    """SIGTERM to every process left in the group, SIGKILL to what is still there after `grace_s`.
    A daemon's code server normally leaves when the daemon does (heartbeats); one whose daemon died
    in a database outage was seen alive for good, its heartbeat and cleanup threads gone, holding
    its memory and socket."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
            os.killpg(pgid, signal.SIGCONT)  # a stopped process acts on its SIGTERM only once resumed
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not _live_in_group(pgid):
                return
            time.sleep(0.2)


def _live_in_group(pgid: int) -> bool:
    """Whether a process of the group is alive (zombies, which an init that does not reap keeps, are not)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: the group answers for itself
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


@contextmanager
def running_daemon(settings: Settings, instance) -> Iterator[Daemon]:
    """A dagster-daemon on the instance while inside (see `Daemon`)."""
    daemon = Daemon(settings)
    daemon.ensure(instance)
    try:
        yield daemon
    finally:
        daemon.stop(instance)
