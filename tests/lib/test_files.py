"""Atomic writes: a full disk (ENOSPC) or any failure mid-write leaves neither a partial file nor
the temporary one, and the previous file stays whole."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from chaffee_assets.lib import files
from chaffee_assets.lib.artifacts import ArtifactStore


def _disk_full_after(monkeypatch, n_bytes: int) -> None:
    real = os.write
    written = {"n": 0}

    def write(fd, data):
        if written["n"] + len(data) > n_bytes:
            raise OSError(errno.ENOSPC, "No space left on device")
        written["n"] += len(data)
        return real(fd, data)

    monkeypatch.setattr(files.os, "write", write)


def test_a_full_disk_leaves_no_partial_file_and_the_old_one_whole(tmp_path, monkeypatch):
    target = tmp_path / "artifact.json"
    files.atomic_write(target, b"the old content")
    _disk_full_after(monkeypatch, 10)
    with pytest.raises(OSError) as full:
        files.atomic_write(target, b"x" * 100_000)
    assert full.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"the old content"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact.json"]  # no .tmp left keeping the disk full


def test_the_artifact_stores_waveform_and_json_writes_leave_nothing_on_enospc(tmp_path, monkeypatch):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    _disk_full_after(monkeypatch, 1000)
    with pytest.raises(OSError):
        store.save_waveform("audio", "vid", np.random.default_rng(0).uniform(-0.5, 0.5, 16_000 * 5).astype(np.float32))
    assert not [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]


def test_a_private_file_is_never_readable_by_others(tmp_path):
    path = files.atomic_write(tmp_path / "secret.yaml", b"password", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
