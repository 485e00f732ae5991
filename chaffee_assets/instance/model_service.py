"""Standing the model service up: a local Ray head in the state folder (bound to 127.0.0.1, no
dashboard) or an existing cluster (RAY_ADDRESS), and the Serve application on it with its models
warm (`lib/models/serve_app.py`).

The head is started with `ray start` in a session of its own, recorded in `<state>/ray/head.json`
(address, session id); `stop_head` stops exactly that session's processes, in `ray stop`'s order
(the raylet, then the rest, the GCS last), never every Ray process on the machine as `ray stop`
would. With RAY_ADDRESS nothing is started or stopped: the application is deployed there (and
deleted by `chaffee down`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaffee_assets.lib.errors import ChaffeeError, ServiceUnavailable
from chaffee_assets.lib.files import atomic_write
from chaffee_assets.lib.models.client import APP_NAME, address_from_file, connect_driver, prepare_ray_env
from chaffee_assets.lib.models.service import ServiceConfig
from chaffee_assets.lib.types import ReplicaInfo
from chaffee_assets.settings import Settings

log = logging.getLogger(__name__)

MAX_TEMP_DIR = 43  # Ray's socket paths (<temp>/session_…/sockets/plasma_store) must fit in 107 bytes
OBJECT_STORE_BYTES = 256 << 20  # requests carry references and results are small: no need for 30 % of RAM


@dataclass(frozen=True)
class ServiceStatus:
    address: str
    app_status: str  # RUNNING, DEPLOYING, DEPLOY_FAILED, … or NOT_DEPLOYED
    deployments: dict[str, str] = field(default_factory=dict)  # name -> status (replica states)
    replicas: tuple[ReplicaInfo, ...] = ()
    message: str = ""


def head_file(settings: Settings) -> Path:
    return settings.state_path / "ray" / "head.json"


def service_config(settings: Settings) -> ServiceConfig:
    """The replicas' configuration, from the settings (the models are warmed at start)."""
    warm = [f"whisper:{settings.whisper_model}", f"text:{settings.embedding_model}", "ecapa", "vad"]
    if settings.whisper_language_check:
        warm.append(f"language:{settings.whisper_language_check}")  # loaded beside an English-only whisper only
    if settings.diarization_method in ("hybrid", "auto"):
        warm.append("segmentation")  # the monologue check's overlap stage
    if settings.diarization_method in ("auto", "pyannote"):
        warm.append("pyannote")
    return ServiceConfig(
        device=settings.device, model_cache=str(settings.model_cache_dir), threads=settings.model_threads,
        whisper_workers=settings.asr_workers, text_batch_size=settings.batch_size,
        pyannote_model=settings.pyannote_model, warm=tuple(warm),
    )


# -- the local head ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, name) of every live process of session `sid` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) != sid:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] != "Z":
                out.append((pid, Path(f"/proc/{pid}/comm").read_text().strip()))
        except (OSError, IndexError):
            continue
    return out


def _recorded_head(settings: Settings) -> dict | None:
    """The head recorded in the state folder, if its GCS is still alive."""
    try:
        head = json.loads(head_file(settings).read_text())
    except (OSError, ValueError):
        return None
    names = {name for _, name in _session_processes(int(head.get("sid", -1)))}
    return head if "gcs_server" in names else None


def _temp_dir(settings: Settings) -> Path:
    """The head's temp folder in the state folder, through a short link in /tmp when its path is
    too long for Ray's unix sockets."""
    real = settings.state_path / "ray" / "tmp"
    real.mkdir(parents=True, exist_ok=True)
    if len(str(real)) <= MAX_TEMP_DIR:
        return real
    link = Path("/tmp") / f"chaffee-ray-{hashlib.sha1(str(real).encode()).hexdigest()[:10]}"
    if link.is_symlink() and link.resolve() != real.resolve():
        link.unlink()
    if not link.is_symlink():
        link.symlink_to(real, target_is_directory=True)
    return link


def start_head(settings: Settings, timeout_s: float = 180.0) -> str:
    """Start (or reuse) the state folder's Ray head; its address."""
    head = _recorded_head(settings)
    if head is not None:
        return str(head["address"])
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = _temp_dir(settings)
    cores = settings.model_threads or os.cpu_count() or 1
    argv = [
        # this Python's `ray start`: the head's workers then import this install, wheel or checkout
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", f"--num-cpus={cores}",
        f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
        f"--object-store-memory={OBJECT_STORE_BYTES}", "--no-monitor", "--include-log-monitor=false",
    ]
    env = {**os.environ}
    prepare_ray_env(address)
    env.update({k: os.environ[k] for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED") if k in os.environ})
    logfile = settings.state_path / "ray" / "head.log"
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            _kill_session(proc.pid)
            raise ChaffeeError(f"the Ray head did not start within {timeout_s:.0f} s; see {logfile}") from e
    if rc != 0:
        _kill_session(proc.pid)
        raise ChaffeeError(f"the Ray head did not start (ray start exited {rc}); see {logfile}")
    atomic_write(head_file(settings), json.dumps({"address": address, "sid": proc.pid, "temp_dir": str(temp)}).encode(), 0o600)
    log.info("ray head %s started (session %d)", address, proc.pid)
    return address


def _kill_session(sid: int, grace_s: float = 10.0) -> None:
    procs = _session_processes(sid)
    order = (
        [p for p, n in procs if n == "raylet"],
        [p for p, n in procs if n not in ("raylet", "gcs_server")],
        [p for p, n in procs if n == "gcs_server"],
    )
    for group in order:
        for pid in group:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s / 3
        while time.monotonic() < deadline and any(_alive(p) for p in group):
            time.sleep(0.1)
        for pid in group:
            if _alive(pid):
                _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_head(settings: Settings) -> bool:
    """Stop the state folder's head (every process of its session); False if none was running."""
    head = _recorded_head(settings)
    if head is None:
        head_file(settings).unlink(missing_ok=True)
        return False
    _kill_session(int(head["sid"]))
    head_file(settings).unlink(missing_ok=True)
    return True


# -- the application -----------------------------------------------------------------------------


def service_address(settings: Settings) -> str:
    """RAY_ADDRESS, else the local head's (raises ServiceUnavailable when it is not running)."""
    return settings.ray_address or address_from_file(head_file(settings))


def _connect(address: str) -> bool:
    """This process connected to the cluster as a Ray driver; True when this call made the
    connection. Ray has one per process: one made earlier (a ModelClient's, in the middle of its
    calls) is its maker's to close."""
    ray = sys.modules.get("ray")  # not imported before its environment is set (connect_driver)
    already = ray is not None and ray.is_initialized()
    connect_driver(address)
    return not already


def _disconnect(made: bool) -> None:
    import ray

    if made and ray.is_initialized():
        ray.shutdown()


def _replica_layout(settings: Settings) -> tuple[int, float]:
    """(replicas, GPUs each): one replica per GPU of the cluster, else one on the CPU."""
    import ray

    if settings.device == "cpu":
        return max(1, settings.service_replicas or 1), 0.0
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus == 0:
        return max(1, settings.service_replicas or 1), 0.0
    return settings.service_replicas or gpus, 1.0


def deploy(settings: Settings, timeout_s: float | None = None) -> float:
    """Deploy (or update in place) the application, and wait until its models are warm; seconds."""
    timeout_s = timeout_s or settings.service_start_timeout_seconds
    address = service_address(settings)
    t0 = time.perf_counter()
    made = _connect(address)  # first: Ray must not be imported before its environment is set
    from ray import serve

    from chaffee_assets.lib.models.serve_app import build_app

    try:
        serve.start(proxy_location="Disabled")  # no HTTP: runs call through handles
        replicas, gpus = _replica_layout(settings)
        resources = {settings.service_resource: 1.0} if settings.service_resource else None
        app = build_app(service_config(settings), replicas, gpus, 0.0, resources)
        serve._run(app, name=APP_NAME, route_prefix=None, _blocking=False)
        _wait_running(timeout_s)
    finally:
        _disconnect(made)
    return time.perf_counter() - t0


def _wait_running(timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(APP_NAME)
        if app is not None and app.status == "RUNNING":
            return
        if app is not None and app.status == "DEPLOY_FAILED":
            raise ChaffeeError(f"the model service failed to start: {app.message.strip()[-2000:]}")
        if time.monotonic() > deadline:
            message = app.message.strip()[-1000:] if app is not None else "not deployed"
            raise ChaffeeError(f"the model service was not ready after {timeout_s:.0f} s: {message}")
        time.sleep(0.5)


def undeploy(settings: Settings) -> bool:
    """Delete the application (RAY_ADDRESS: the cluster stays); False if it was not deployed."""
    try:
        made = _connect(service_address(settings))
    except (ServiceUnavailable, ConnectionError):
        return False
    from ray import serve

    try:
        if APP_NAME not in serve.status().applications:
            return False
        serve.delete(APP_NAME)
        return True
    finally:
        _disconnect(made)


def status(settings: Settings, probes: int = 4) -> ServiceStatus:
    """The application's state and each replica it reaches (`probes` calls per replica)."""
    address = service_address(settings)
    made = _connect(address)
    from ray import serve

    try:
        app = serve.status().applications.get(APP_NAME)
        if app is None:
            return ServiceStatus(address, "NOT_DEPLOYED")
        deployments = {
            name: f"{d.status} " + ", ".join(f"{n} {state}" for state, n in d.replica_states.items())
            for name, d in app.deployments.items()
        }
        replicas: dict[str, ReplicaInfo] = {}
        if app.status == "RUNNING":
            handle = serve.get_app_handle(APP_NAME)
            count = sum(sum(d.replica_states.values()) for d in app.deployments.values())
            for r in [handle.info.remote() for _ in range(max(1, count) * probes)]:
                info = r.result(timeout_s=30)
                replicas[info.replica] = info
        return ServiceStatus(address, str(app.status), deployments, tuple(replicas.values()), app.message)
    finally:
        _disconnect(made)


def up(settings: Settings) -> tuple[str, float]:
    """The service running with its models warm: (address, seconds)."""
    t0 = time.perf_counter()
    if not settings.ray_address:
        start_head(settings)
    deploy(settings)
    return service_address(settings), time.perf_counter() - t0


def down(settings: Settings) -> bool:
    """Stop the local head (RAY_ADDRESS: delete the application only)."""
    if settings.ray_address:
        return undeploy(settings)
    return stop_head(settings)


def client(settings: Settings, **options):
    """A client of the service for this installation (RAY_ADDRESS, or the local head); `options`
    go to `ModelClient` (timeouts)."""
    from chaffee_assets.lib.models.client import ModelClient

    if settings.ray_address:
        return ModelClient(settings.ray_address, **options)
    return ModelClient(address_file=str(head_file(settings)), **options)
