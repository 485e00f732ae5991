"""`chaffee` as a user runs it: a fresh state folder, the embedded Postgres, Dagster's instance on it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def chaffee(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "chaffee_assets.app.cli", *args], cwd=env["_CWD"], env=env, capture_output=True, text=True, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"chaffee {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("cli")
    e = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DAGSTER_HOME", "ARTIFACT_ROOT")}
    e.update(CHAFFEE_HOME=str(home / "state"), VOICES_DIR=str(home / "voices"), DEVICE="cpu", _CWD=str(home))
    yield e
    chaffee(e, "down", check=False)


def test_up_is_idempotent_and_puts_dagster_on_postgres(env):
    first = chaffee(env, "up").stdout
    assert "embedded Postgres" in first and "migrations" in first
    second = chaffee(env, "up").stdout
    assert "migrations" not in second  # nothing left to apply
    yaml = (Path(env["CHAFFEE_HOME"]) / "dagster" / "dagster.yaml").read_text()
    assert "postgres_url" in yaml and "postgresql+psycopg2://" in yaml and "max_concurrent_runs: 4" in yaml
    assert "pool_poll_seconds: 0.5" in yaml
    status = chaffee(env, "status").stdout
    assert "running" in status and "gpu=2" in status and "0 video partitions: 0 stored, 0 failed" in status
    assert "service    RUNNING" in status and "replica" in status


def test_status_reads_the_pool_limit_from_asr_workers(env):
    chaffee({**env, "ASR_WORKERS": "3"}, "up")
    assert "gpu=3" in chaffee(env, "status").stdout
    chaffee(env, "up")


def test_search_before_anything_is_ingested_is_a_clear_error(env):
    chaffee(env, "up")
    r = chaffee(env, "search", "ketones", check=False)
    assert r.returncode == 2 and "chaffee: error:" in r.stderr and "no" in r.stderr.lower()
    r = chaffee(env, "search", "   ", check=False)
    assert r.returncode == 2 and "empty query" in r.stderr


def test_ingest_of_bad_files_names_each_video_and_the_cause(env, tmp_path):
    empty = tmp_path / "empty-talk.mp3"
    empty.write_bytes(b"")
    html = tmp_path / "not-media.m4a"
    html.write_text("<!doctype html><html><body>Sign in</body></html>")
    r = chaffee(env, "ingest", str(empty), str(html), check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 1
    assert re.search(r"empty-talk-[0-9a-f]{10}: FAILED", out) and re.search(r"not-media-[0-9a-f]{10}: FAILED", out)
    assert "0 ingested, 2 failed" in out
    status = chaffee(env, "status").stdout
    assert "0 stored, 2 failed" in status and "0 passages" in status  # nothing half-written, failures counted
    assert re.search(r"failed     empty-talk-[0-9a-f]{10}: audio: .*empty", status), status  # with the cause


def test_ingest_rejects_a_missing_file_before_doing_anything(env, tmp_path):
    r = chaffee(env, "ingest", str(tmp_path / "nope.wav"), check=False)
    assert r.returncode == 2 and "no such file" in r.stderr


def _instance_state(env) -> tuple[list[str], int]:
    """The `videos` partitions and the number of runs on this state folder's Dagster instance."""
    code = ("import json, dagster as dg; i = dg.DagsterInstance.get(); "
            "print(json.dumps(sorted(i.get_dynamic_partitions('videos')))); print(len(i.get_runs()))")
    home = str(Path(env["CHAFFEE_HOME"]) / "dagster")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env={**env, "DAGSTER_HOME": home}, cwd=env["_CWD"],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    return json.loads(out[-2]), int(out[-1])


def test_add_registers_partitions_for_a_backfill_and_runs_nothing(env, tmp_path):
    import numpy as np
    import soundfile as sf

    for name in ("talk-a", "talk-b"):
        sf.write(tmp_path / f"{name}.wav", np.zeros(16_000, dtype=np.float32), 16_000)
    files = [str(tmp_path / "talk-a.wav"), str(tmp_path / "talk-b.wav")]
    chaffee(env, "up")
    _, runs_before = _instance_state(env)
    out = chaffee(env, "add", *files).stdout
    assert re.search(r"2 videos listed, 2 new partitions: talk-a-[0-9a-f]{10}, talk-b-[0-9a-f]{10}", out), out
    assert "0 new partitions" in chaffee(env, "add", *files).stdout  # again: nothing new
    partitions, runs = _instance_state(env)
    assert {p.rsplit("-", 1)[0] for p in partitions} >= {"talk-a", "talk-b"} and runs == runs_before


def test_two_files_of_one_name_in_two_folders_are_two_videos(env, tmp_path):
    import numpy as np
    import soundfile as sf

    for n, folder in enumerate(("one", "two")):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "talk.wav", np.full(16_000, 0.01 * (n + 1), dtype=np.float32), 16_000)
    chaffee(env, "up")
    out = chaffee(env, "add", str(tmp_path / "one" / "talk.wav"), str(tmp_path / "two" / "talk.wav")).stdout
    assert "2 videos listed, 2 new partitions" in out, out


def _long_talk(tmp_path, fixtures_dir, name: str, repeats: int = 12):
    import numpy as np
    import soundfile as sf

    from chaffee_assets.lib.voices import read_audio

    jfk = read_audio(fixtures_dir / "jfk.flac")
    path = tmp_path / f"{name}.flac"
    sf.write(path, np.concatenate([jfk] * repeats), 16_000)
    return path


def test_sigterm_cancels_the_ingest_and_frees_its_slots(env, tmp_path, fixtures_dir):
    """SIGTERM (as Ctrl-C) while runs are in flight: the command cancels them and returns within
    seconds; no run is left running, no `gpu` slot held."""
    import signal
    import time

    files = [str(_long_talk(tmp_path, fixtures_dir, f"cancel-{i}")) for i in range(3)]
    chaffee(env, "up")
    proc = subprocess.Popen([sys.executable, "-m", "chaffee_assets.app.cli", "ingest", *files], cwd=env["_CWD"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if ": running" in line:
            break
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == 130, "".join(seen) + out
    assert took < 45, took
    assert "cancelling" in out and "(cancelled)" in out
    code = ("import dagster as dg; from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, RunsFilter\n"
            "i = dg.DagsterInstance.get()\n"
            "print(len(i.get_runs(RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))), "
            "len(i.event_log_storage.get_concurrency_info('gpu').claimed_slots))")
    home = str(Path(env["CHAFFEE_HOME"]) / "dagster")
    left = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env={**env, "DAGSTER_HOME": home}, cwd=env["_CWD"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left[-2:] == ["0", "0"], left


def test_a_run_process_imports_no_torch_and_loads_no_model(env, tmp_path, fixtures_dir):
    """Thin runs, checked from the runs' own processes: while a two-video ingest runs, every run
    worker (a process of the daemon's session running the code location) is inspected for torch's
    library in its memory maps and for model files open."""
    import time

    chaffee(env, "up")
    files = [str(_long_talk(tmp_path, fixtures_dir, f"thin-{i}", repeats=6)) for i in range(2)]
    proc = subprocess.Popen([sys.executable, "-m", "chaffee_assets.app.cli", "ingest", *files], cwd=env["_CWD"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers: dict[int, bool] = {}
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        for pid in _run_workers():
            try:
                maps = Path(f"/proc/{pid}/maps").read_text()
            except OSError:
                continue
            workers[pid] = workers.get(pid, False) or "libtorch" in maps or "ctranslate2" in maps
        time.sleep(0.3)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out
    assert len(workers) >= 2, workers  # both videos' runs were seen
    assert not any(workers.values()), workers


def _run_workers() -> list[int]:
    """Dagster run workers on this machine (multiprocessing children running a run)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "multiprocessing" in cmd and ("spawn_main" in cmd or "forkserver" in cmd):
                out.append(int(entry))
    return out


def test_a_backgrounded_dev_stops_on_sigterm(env, tmp_path):
    """`chaffee dev &` from a script (a shell without job control starts it with SIGINT ignored):
    once the UI answers, a SIGTERM to the command alone stops it and everything it started. Before
    the fix `dagster dev` and its code servers ignored SIGTERM (Dagster maps it to SIGINT's handler)
    and were still alive after it."""
    import signal
    import time
    import urllib.request

    from chaffee_assets.instance.setup import _live_in_group
    from tests.helpers.processes import free_port

    port = free_port()
    with open(tmp_path / "dev.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "chaffee_assets.app.cli", "dev", "--port", str(port)], cwd=env["_CWD"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
                time.sleep(1)
        ignored = int(re.search(r"SigIgn:\s*([0-9a-f]+)", Path(f"/proc/{proc.pid}/status").read_text()).group(1), 16)
        assert not ignored & (1 << (signal.SIGTERM - 1)), f"SIGTERM ignored: SigIgn {ignored:#x}"
        proc.send_signal(signal.SIGTERM)  # the command only, as `kill %1` or a service manager does
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while _live_in_group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _live_in_group(proc.pid), "a process `chaffee dev` started outlived it"
    finally:
        if proc.poll() is None or _live_in_group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
