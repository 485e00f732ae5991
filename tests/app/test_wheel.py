"""The installed package works on its own: a wheel built from this checkout, installed into a fresh
virtualenv (reusing this environment's pinned packages: nothing is downloaded), then `chaffee up`,
`chaffee ingest FILE` and `chaffee search` from a folder that is not the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd, cwd, env, timeout=900):
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_a_built_wheel_installed_alone_stands_up_ingests_and_searches(tmp_path, fixtures_dir):
    # built from a copy of the sources: setuptools writes build/ and egg-info beside them
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", ".chaffee", "build", "bench", "tests",
                                                                "*.egg-info", "__pycache__"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
         tmp_path, os.environ)
    [wheel] = dist.glob("chaffee_assets-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, os.environ)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                     os.environ).stdout.strip())
    # the pinned packages of this environment, behind the new one's own (no project code there:
    # the checkout's editable install is a finder that a .pth line does not run)
    (site / "pinned.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path, os.environ)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DAGSTER_", "RAY_ADDRESS", "CHAFFEE_"))}
    env.update(DEVICE="cpu", PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", PYTHONPATH="")
    where = _run([str(python), "-c", "import chaffee_assets, sys; print(chaffee_assets.__file__)"], work, env).stdout
    assert str(venv) in where and str(REPO) not in where  # the wheel's code, not the checkout's
    chaffee = str(venv / "bin" / "chaffee")
    try:
        up = _run([chaffee, "up"], work, env)
        assert "migrations" in up.stdout and "model service" in up.stdout
        talk = work / "ask-not.flac"
        talk.write_bytes((fixtures_dir / "jfk.flac").read_bytes())
        ingest = _run([chaffee, "ingest", str(talk)], work, env)
        assert "1 ingested, 0 failed" in ingest.stdout, ingest.stdout
        hits = _run([chaffee, "search", "ask what you can do for your country", "-k", "1"], work, env).stdout
        assert "your country" in hits.lower() and "ask-not" in hits
        assert (work / ".chaffee" / "dagster" / "dagster.yaml").is_file()  # the template travelled as package data
    finally:
        subprocess.run([chaffee, "down"], cwd=work, env=env, capture_output=True, timeout=300)
