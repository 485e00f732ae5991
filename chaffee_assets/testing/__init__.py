"""Support for the demo, the tests and the benchmarks: the real speech the project ships
(`fixtures_dir`) and the demo channel built from it (`demo_channel`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["fixtures_dir"]


def fixtures_dir() -> Path:
    """The folder of the packaged recordings (jfk.flac, sample.wav and their references)."""
    folder = Path(str(resources.files(__package__) / "data"))
    if not (folder / "jfk.flac").is_file():  # an install that dropped the package data
        raise FileNotFoundError(f"the packaged demo audio is missing from {folder}: reinstall chaffee_assets")
    return folder
