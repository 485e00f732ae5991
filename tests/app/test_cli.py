"""`chaffee` as a user runs it: a fresh state folder, the embedded Postgres, Dagster's instance on it."""

from __future__ import annotations

import json
import os
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
    assert "running" in status and "gpu=2" in status and "0 videos, 0 passages" in status


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
    assert "empty-talk: FAILED" in out and "not-media: FAILED" in out
    assert "0 ingested, 2 failed" in out
    assert "0 videos, 0 passages" in chaffee(env, "status").stdout  # nothing half-written


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
    assert "2 videos listed, 2 new partitions: talk-a, talk-b" in chaffee(env, "add", *files).stdout
    assert "0 new partitions" in chaffee(env, "add", *files).stdout  # again: nothing new
    partitions, runs = _instance_state(env)
    assert {"talk-a", "talk-b"} <= set(partitions) and runs == runs_before
