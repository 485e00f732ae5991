"""The layers of the README ("Where code lives"), checked by import-linter's contracts in
pyproject.toml: imports point one way, lib/ imports neither Dagster nor a database driver."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "3 kept, 0 broken" in out.stdout


def test_a_broken_layer_is_caught(tmp_path):
    """The contracts can fail: lib/ reaching up into the settings is reported."""
    import shutil

    shutil.copytree(REPO / "chaffee_assets", tmp_path / "chaffee_assets", ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "chaffee_assets" / "lib" / "ids.py"
    bad.write_text(bad.read_text() + "\nfrom chaffee_assets.settings import Settings  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "chaffee_assets.lib.ids -> chaffee_assets.settings" in out.stdout, out.stdout[-3000:]
