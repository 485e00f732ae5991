"""A password in DATABASE_URL stays secret: never in what `chaffee up`, `status` or `dev` print, never
on the UI's resource page (an environment variable's name instead), only in files of mode 0600 in
folders nobody else can read. A real role with a password on the session's embedded Postgres."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from chaffee_assets.archive import db
from tests.helpers.processes import free_port

pytestmark = pytest.mark.slow
SECRET = "S3cret-Passw0rd-" + uuid.uuid4().hex[:8]




@pytest.fixture(scope="module")
def env(pg_server, model_service, tmp_path_factory):
    home = tmp_path_factory.mktemp("secrets")
    name = f"s_{uuid.uuid4().hex[:10]}"
    db.ensure_database(pg_server.url(), name)
    with db.connect(pg_server.url(name), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{SECRET}'")
    url = f"postgresql://{name}:{SECRET}@/{name}?host={pg_server.socket_dir}"
    e = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ARTIFACT_ROOT")}
    # the session's model service, with the same configuration it was deployed with (no restart)
    e.update(CHAFFEE_HOME=str(home / "state"), DATABASE_URL=url, RAY_ADDRESS=model_service, DEVICE="cpu",
             BATCH_SIZE="16", VOICES_DIR=str(home / "voices"), _CWD=str(home))
    return e


def _chaffee(env, *args):
    return subprocess.run([sys.executable, "-m", "chaffee_assets.app.cli", *args], cwd=env["_CWD"], env=env,
                          capture_output=True, text=True, timeout=600)


def test_no_secret_in_output_and_only_in_private_files(env):
    up = _chaffee(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    status = _chaffee(env, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    for out in (up.stdout, up.stderr, status.stdout, status.stderr):
        assert SECRET not in out
    assert "***" in up.stdout  # the URL is shown, masked
    state = Path(env["CHAFFEE_HOME"])
    assert stat.S_IMODE(state.stat().st_mode) & 0o077 in (0, 0o011)  # 0700, or 0711 as root (see setup.py)
    holding = []
    for path in state.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and SECRET.encode() in path.read_bytes():
                holding.append(path)
        except OSError:
            continue
    assert holding, "dagster.yaml holds the storage URL"
    for path in holding:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for parent in path.parents:
            if parent == state.parent:
                break
            assert stat.S_IMODE(parent.stat().st_mode) & 0o044 == 0, parent  # nobody else lists them


def test_the_ui_shows_the_variables_name_not_the_password(env):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "chaffee_assets.app.cli", "dev", "--port", str(port)], cwd=env["_CWD"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    query = """{ repositoryOrError(repositorySelector: {repositoryLocationName: "chaffee_assets", repositoryName: "__repository__"}) {
      ... on Repository { allTopLevelResourceDetails { name configuredValues { key value type } } } } }"""
    try:
        answer = None
        deadline = time.time() + 240
        while time.time() < deadline and answer is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", json.dumps({"query": query}).encode(),
                                             {"Content-Type": "application/json"})
                body = json.loads(urllib.request.urlopen(req, timeout=10).read())
                if body.get("data", {}).get("repositoryOrError", {}).get("allTopLevelResourceDetails"):
                    answer = body
            except OSError:
                time.sleep(2)
        assert answer is not None, "the UI never answered"
        resources = {r["name"]: r for r in answer["data"]["repositoryOrError"]["allTopLevelResourceDetails"]}
        archive = {v["key"]: v for v in resources["archive"]["configuredValues"]}
        assert archive["database_url"] == {"key": "database_url", "value": "DATABASE_URL", "type": "ENV_VAR"}
        assert SECRET not in json.dumps(answer)
    finally:
        os.killpg(proc.pid, 15)
        try:
            out = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out = proc.communicate(timeout=30)[0]
    assert SECRET not in out
    assert "BetaWarning" not in out  # the project's deliberate beta parameters are not shouted about
