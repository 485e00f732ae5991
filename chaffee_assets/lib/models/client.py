"""The runs' side of the model service: a Ray driver connection and the Serve application's
handle. A run process imports Ray and the project's contracts, never torch or a model library.

    with ModelClient("127.0.0.1:6390") as models:
        regions = models.call("speech_regions", url, video_id, about=f"video {video_id}").value

`call` waits for the answer; while the service is away (restarting, a replica died mid-request,
the application redeployed) it reconnects and asks again until `unavailable_grace_s` has passed,
then raises `ServiceUnavailable` naming what it was asked for. Requests are idempotent (a retried
transcription transcribes again), so a retry never duplicates anything.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chaffee_assets.lib.errors import ServiceUnavailable
from chaffee_assets.lib.models.ecapa import ECAPA_MODEL_ID

log = logging.getLogger(__name__)

APP_NAME = "chaffee"  # the Serve application (lib/models/serve_app.py: APP_NAME)


def is_loopback(address: str) -> bool:
    host = urlsplit(address if "://" in address else f"ray://{address}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare_ray_env(address: str) -> None:
    """Before `import ray` in a process that talks to `address`: a head on 127.0.0.1 is reached
    on 127.0.0.1 (Ray otherwise rewrites loopback into the machine's network address)."""
    if is_loopback(address):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        constants = sys.modules.get("ray._private.ray_constants")
        if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
            # Ray read its setting when it was imported: it would rewrite 127.0.0.1 and hang
            raise ServiceUnavailable(
                f"this process imported Ray before connecting to the head on {address}; "
                "connect through chaffee_assets.lib.models.client first"
            )
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def connect_driver(address: str, probe_timeout_s: float = 10.0) -> None:
    """Connect this process to the cluster at `address` as a Ray driver. A host:port that does not
    answer raises `ServiceUnavailable` within `probe_timeout_s` (`ray.init` would wait for minutes)."""
    prepare_ray_env(address)
    import ray

    if ray.is_initialized():
        return
    if "://" not in address and address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=probe_timeout_s).close()
        except (OSError, ValueError) as e:
            raise ServiceUnavailable(f"no Ray cluster answers at {address} ({e}); is it up (`chaffee up`)?") from e
    ray.init(address=address, logging_level="WARNING", log_to_driver=False, configure_logging=False)


def address_from_file(path: str | Path) -> str:
    """The address `chaffee up` recorded for the embedded head (its state folder's ray/head.json)."""
    try:
        return str(json.loads(Path(path).read_text())["address"])
    except (OSError, ValueError, KeyError) as e:
        raise ServiceUnavailable(f"the model service is not running (no head recorded in {path}): run `chaffee up`") from e


class ModelClient:
    def __init__(self, address: str = "", address_file: str = "", app: str = APP_NAME,
                 call_timeout_s: float = 6 * 3600, unavailable_grace_s: float = 180.0):
        if not address and not address_file:
            raise ValueError("ModelClient needs an address or the file the head's address is in")
        self.address, self.address_file, self.app = address, address_file, app
        self.call_timeout_s, self.unavailable_grace_s = call_timeout_s, unavailable_grace_s
        self._handle: Any = None
        self._lock = threading.Lock()  # one connection for the threads of a step

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _address(self) -> str:
        return self.address or address_from_file(self.address_file)

    def connect(self) -> Any:
        """The application's handle, connecting this process to the cluster first if needed."""
        with self._lock:
            return self._handle if self._handle is not None else self._connect()

    def _connect(self) -> Any:
        connect_driver(self._address())
        from ray import serve

        self._handle = serve.get_app_handle(self.app)
        return self._handle

    def _reset(self, e: BaseException) -> None:
        """After the service was away: a new handle next time; a new connection to the cluster only
        when the head itself went away. (Shutting Ray down for a redeploy would cut the other
        threads of this process off in the middle of their own calls.)"""
        with self._lock:
            self._handle = None
        if _head_gone(e):
            self.close()

    def close(self) -> None:
        self._handle = None
        import sys

        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()

    def call(self, method: str, *args: Any, about: str = "") -> Any:
        """`method` of the service with `args`; see the module docstring for what a retry is."""
        deadline = time.monotonic() + self.unavailable_grace_s
        delay = 1.0
        while True:
            try:
                return getattr(self.connect(), method).remote(*args).result(timeout_s=self.call_timeout_s)
            except Exception as e:  # noqa: BLE001 - sorted below: only the service being away is retried
                if not _service_away(e):
                    raise
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(
                        f"{about or method}: the model service did not answer for {self.unavailable_grace_s:.0f} s "
                        f"({type(e).__name__}: {_first_line(e)}); is it up (`chaffee status`)?"
                    ) from e
                log.warning("%s: the model service is away (%s); asking again in %.0f s", about or method,
                            type(e).__name__, delay)
                self._reset(e)
                time.sleep(delay)
                delay = min(delay * 2, 15.0)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def _head_gone(e: BaseException) -> bool:
    """The cluster's head (not just the application) went away: the driver must connect again."""
    from ray import exceptions as rex

    return isinstance(e, (ConnectionError, rex.RaySystemError)) or (
        isinstance(e, TimeoutError) and "resolving" in str(e).lower())


def _service_away(e: BaseException) -> bool:
    """A replica that died, an application being (re)deployed or deleted, a head that went away."""
    from ray import exceptions as rex
    from ray.serve import exceptions as sex

    away = (rex.RayActorError, rex.ActorUnavailableError, sex.DeploymentUnavailableError, sex.BackPressureError,
            rex.RaySystemError, ConnectionError, ServiceUnavailable)
    if isinstance(e, away):
        return True
    if isinstance(e, sex.RayServeException) and "does not exist" in str(e):
        return True  # the application is not deployed (yet, or any more)
    return isinstance(e, TimeoutError) and "resolving" in str(e).lower()  # the head is gone


class ServiceQueryEmbedder:
    """The archive search's query embedder, through the service (`archive.search.QueryEmbedder`)."""

    def __init__(self, client: ModelClient, model: str):
        self.client, self.model = client, model
        self.model_id = client.call("text_model", model).model_id

    def embed_query(self, text: str):
        return self.client.call("embed_texts", [text], self.model, about="the search query").value[0]

    def encoder_for(self, model: str):
        """The query encoder of another (packaged) model, while a re-embed is incomplete."""
        return ServiceQueryEmbedder(self.client, model).embed_query


class ServiceClipEmbedder:
    """Enrolment clips embedded by the service: each decoded clip goes to the artifact store (the
    service reads it there, wherever it runs) and comes back as one unit vector."""

    model_id = ECAPA_MODEL_ID

    def __init__(self, client: ModelClient, store: Any):
        self.client, self.store = client, store

    def clip_vector(self, wav):
        import hashlib

        key = "clip-" + hashlib.sha1(wav.tobytes()).hexdigest()[:16]
        url = self.store.save_waveform("enrolment", key, wav)
        try:
            return self.client.call("clip_embedding", url, about="an enrolment clip").value
        finally:
            self.store.delete("enrolment", key)
