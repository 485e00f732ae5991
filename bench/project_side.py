"""The project side of bench/throughput.py: the real thing, on a fresh state folder.

`chaffee up` (the embedded Postgres, Dagster's instance on it, the `gpu` pool), the real
`dagster-daemon` as a subprocess with the project's settings in its environment, the `new_uploads`
sensor turned on with `dagster sensor start` (what the UI toggle does), then wait until every
video's `db_rows` is materialised. Everything started here is stopped on the way out, even on error.
What happened is read back from Dagster's event log: runs, steps, and the timing metadata the
assets record (`lib.clock`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def project_env(state: Path, feed_url: str, videos: int, overrides: dict[str, str]) -> dict[str, str]:
    """The environment of every project process (daemon, code server, run workers, CLI)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "CHAFFEE_"))}
    env.update({
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "CHAFFEE_HOME": str(state),
        "DAGSTER_HOME": str(state / "dagster"),
        "CHANNEL_URL": feed_url,
        "SENSOR_INTERVAL_SECONDS": "30",
        "SENSOR_MAX_PER_TICK": str(max(25, videos)),
        "VOICES_DIR": str(state / "voices"),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


def settings_for(env: dict[str, str]):
    """The Settings object the project's processes will read from `env`."""
    from chaffee_assets.settings import Settings

    fields = {f.alias: env[f.alias] for f in Settings.model_fields.values() if f.alias and f.alias in env}
    return Settings(_env_file=None, **fields)


def warm_model_cache(settings) -> float:
    """Assemble the packaged models into the state folder's model cache (what a long-lived
    installation already has), so that neither side pays a one-time copy inside the measurement."""
    from chaffee_assets.lib.models import registry

    t0 = time.time()
    cache = settings.model_cache_dir
    registry.resolve_whisper(settings.whisper_model, cache)
    registry.resolve_embedding(settings.embedding_model, cache)
    registry.ecapa_dir(cache)
    return time.time() - t0


@contextmanager
def started(argv: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> Iterator[subprocess.Popen]:
    """A long-running process in its own process group (SIGINT/SIGTERM at their defaults, see
    MODELS.md), stopped with its children at the end: SIGTERM, then SIGKILL after 30 s."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(["env", "--default-signal=INT,TERM", *argv], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; its group (code server, run workers) may not be
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def wait_for_daemon(instance, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> float:
    t0 = time.time()
    needed = {"SENSOR", "QUEUED_RUN_COORDINATOR"}
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {proc.returncode}; see {log}")
        if needed <= set(instance.get_daemon_heartbeats()):
            return time.time() - t0
        time.sleep(0.5)
    raise RuntimeError(f"dagster-daemon not healthy after {timeout:.0f} s; see {log}")


def start_sensor(env: dict[str, str], log: Path) -> float:
    """`dagster sensor start new_uploads`: the same as the UI's toggle. Returns its seconds."""
    t0 = time.time()
    with open(log, "ab") as out:
        subprocess.run([str(BIN / "dagster"), "sensor", "start", "new_uploads", "-w", str(Path(env["DAGSTER_HOME"]) / "workspace.yaml")],
                       cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=300)
    return time.time() - t0


ASSETS = ("audio", "transcript", "diarization", "speaker_labels", "segments", "embeddings", "db_rows")
BACKFILL = """mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict | None = None, timeout: float = 60.0) -> dict:
    import json
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_for_webserver(port: int, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> float:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {proc.returncode}; see {log}")
        try:
            out = graphql(port, "{ workspaceOrError { __typename ... on Workspace { locationEntries { "
                                "locationOrLoadError { __typename } } } } }", timeout=5)
            entries = out["data"]["workspaceOrError"]["locationEntries"]
            if entries and all(e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries):
                return time.time() - t0
        except (OSError, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"dagster-webserver not ready after {timeout:.0f} s; see {log}")


def add_videos(env: dict[str, str], feed_url: str, log: Path) -> float:
    """`chaffee add FEED`: the channel's videos become partitions and nothing runs. Returns its seconds."""
    t0 = time.time()
    with open(log, "ab") as out:
        subprocess.run([str(BIN / "chaffee"), "add", feed_url], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                       check=True, timeout=300)
    return time.time() - t0


def launch_backfill(port: int, video_ids: list[str]) -> str:
    """What the UI's *Materialize* → *Launch backfill* sends: every asset, these partitions."""
    params = {"partitionNames": video_ids, "assetSelection": [{"path": [a]} for a in ASSETS], "fromFailure": False}
    out = graphql(port, BACKFILL, {"params": params})
    res = (out.get("data") or {}).get("launchPartitionBackfill") or {}
    if res.get("__typename") != "LaunchBackfillSuccess":
        raise RuntimeError(f"project: backfill not launched: {out}")
    return res["backfillId"]


def wait_until_stored(instance, expected: set[str], timeout: float, progress: Callable[[str], None]) -> None:
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    key = dg.AssetKey("db_rows")
    t0, last = time.time(), -1
    while True:
        done = set(instance.get_materialized_partitions(key)) & expected
        if len(done) != last:
            last = len(done)
            progress(f"project: {last}/{len(expected)} videos stored after {time.time() - t0:.0f} s")
        if done == expected:
            return
        bad = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]))
        if bad:
            raise RuntimeError("project: run failed: " + "; ".join(f"{r.run_id} {r.tags.get('dagster/partition')}"
                                                                   for r in bad))
        if time.time() - t0 > timeout:
            raise TimeoutError(f"project: only {len(done)}/{len(expected)} videos stored after {timeout:.0f} s")
        time.sleep(2.0)


def _plain(value: object) -> object:
    return getattr(value, "value", value)


def collect(instance) -> dict:
    """Runs, their events (steps, engine events) and the assets' metadata, as plain data."""
    runs = []
    for rec in instance.get_run_records():
        run = rec.dagster_run
        events = []
        for entry in instance.all_logs(run.run_id):
            ev = entry.dagster_event
            if ev is None:
                continue
            item = {"t": entry.timestamp, "type": ev.event_type_value, "step": ev.step_key}
            if ev.event_type_value == "ASSET_MATERIALIZATION":
                mat = ev.event_specific_data.materialization
                item.update(asset=mat.asset_key.to_user_string(), partition=mat.partition,
                            metadata={k: _plain(v) for k, v in mat.metadata.items()})
            elif ev.event_type_value in ("ENGINE_EVENT", "RESOURCE_INIT_STARTED", "RESOURCE_INIT_SUCCESS"):
                item["message"] = (ev.message or "")[:300]
            events.append(item)
        runs.append({
            "run_id": run.run_id,
            "partition": run.tags.get("dagster/partition"),
            "status": run.status.value,
            "created": rec.create_timestamp.timestamp(),
            "start": rec.start_time,
            "end": rec.end_time,
            "events": events,
        })
    return {"runs": runs}


@contextmanager
def _launcher(launch: str, env: dict[str, str], feed_url: str, video_ids: list[str], state: Path,
              progress: Callable[[str], None]) -> Iterator[float]:
    """Starts the work; yields the seconds the starting command took (its clock ends as it returns)."""
    log = state / "daemon.log"
    if launch == "sensor":
        yield start_sensor(env, log)
        return
    if launch != "backfill":
        raise ValueError(f"unknown launch {launch!r}: sensor or backfill")
    added = add_videos(env, feed_url, log)
    port = free_port()
    argv = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(Path(env["DAGSTER_HOME"]) / "workspace.yaml")]
    with started(argv, env, state / "webserver.log") as web:
        ready = wait_for_webserver(port, web, state / "webserver.log")
        t0 = time.time()
        backfill = launch_backfill(port, video_ids)
        progress(f"project: `chaffee add` in {added:.1f} s, webserver ready in {ready:.1f} s, backfill {backfill} launched")
        yield time.time() - t0


def run_project(feed_url: str, video_ids: list[str], state: Path, overrides: dict[str, str], timeout: float,
                progress: Callable[[str], None], sampler=None, launch: str = "sensor") -> dict:
    """One project-side measurement; returns the raw trace (see `collect`) plus launch/finish times.
    `launch`: "sensor" (turned on as the UI's toggle does) or "backfill" (`chaffee add FEED`, then a
    backfill of every asset over the videos, sent to dagster-webserver as the UI sends it)."""
    from dagster import DagsterInstance

    from chaffee_assets.instance.setup import down, up

    env = project_env(state, feed_url, len(video_ids), overrides)
    settings = settings_for(env)
    (state / "voices").mkdir(parents=True, exist_ok=True)
    log = state / "daemon.log"
    t_up = time.time()
    up(settings)
    try:
        progress(f"project: `chaffee up` in {time.time() - t_up:.1f} s, model cache warmed in "
                 f"{warm_model_cache(settings):.1f} s; state in {state}")
        instance = DagsterInstance.from_config(str(settings.dagster_home))
        try:
            with started([str(BIN / "dagster-daemon"), "run", "-w", str(Path(env["DAGSTER_HOME"]) / "workspace.yaml")], env, log) as daemon:
                ready = wait_for_daemon(instance, daemon, log)
                progress(f"project: dagster-daemon healthy in {ready:.1f} s (pid {daemon.pid}); launching by {launch}")
                with _launcher(launch, env, feed_url, video_ids, state, progress) as cli:
                    launched = time.time()
                    if sampler:
                        sampler.start()
                    try:
                        wait_until_stored(instance, set(video_ids), timeout, progress)
                    finally:
                        if sampler:
                            sampler.stop()
            trace = collect(instance)
        finally:
            instance.dispose()
    finally:
        down(settings)
    ends = [e["t"] for r in trace["runs"] for e in r["events"]
            if e["type"] == "ASSET_MATERIALIZATION" and e.get("asset") == "db_rows"]
    trace.update(side="project", launch=launch, launched_at=launched, finished_at=max(ends), sensor_cli_seconds=cli,
                 settings={k: str(v) for k, v in settings.model_dump(by_alias=True).items()}, env_overrides=overrides)
    return trace
