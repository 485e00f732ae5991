"""The artifact store: intermediate results addressed by (asset, video id).

A local folder by default, any fsspec URL (s3://, gs://, memory://) when steps run on several
machines. Writes are atomic (a reader sees the old artifact or the new one, never half of one).
Audio is stored as 16-bit PCM WAV (16 kHz mono), vectors as .npy, everything else as JSON. The
`audio` asset keeps its waveform as a 16-bit FLAC (lossless for the models, about half a WAV's size)
written with `save_waveform`, read back by URL with `read_waveform` (the model service does, on
whatever machine it runs), and its `AudioRef` beside it as JSON.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import fsspec
import numpy as np
from pydantic import TypeAdapter

from chaffee_assets.lib.files import atomic_write
from chaffee_assets.lib.ids import validate_video_id
from chaffee_assets.lib.types import SAMPLE_RATE, Audio, PassageVectors, VideoMeta

log = logging.getLogger(__name__)
T = TypeVar("T")

_ASSET_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _suffix(tp: type) -> str:
    if tp is Audio:
        return ".wav"
    if tp is PassageVectors:
        return ".npy"
    return ".json"


class ArtifactStore:
    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.fs, self._base = fsspec.core.url_to_fs(self.root)
        self.is_local = self.fs.protocol in ("file", "local") or self.fs.protocol == ("file", "local")

    # -- addressing ---------------------------------------------------------------------------
    def path(self, asset: str, video_id: str, suffix: str) -> str:
        if not asset or set(asset) - _ASSET_NAME_OK:
            raise ValueError(f"invalid asset name {asset!r}")
        validate_video_id(video_id)
        return f"{self._base}/{asset}/{video_id}{suffix}"

    def url(self, asset: str, video_id: str, tp: type) -> str:
        p = self.path(asset, video_id, _suffix(tp))
        return p if self.is_local else self._full_url(p)

    def exists(self, asset: str, video_id: str, tp: type) -> bool:
        return self.fs.exists(self.path(asset, video_id, _suffix(tp)))

    def delete(self, asset: str, video_id: str) -> None:
        for suffix in (".wav", ".flac", ".npy", ".json", ".meta.json"):
            p = self.path(asset, video_id, suffix)
            if self.fs.exists(p):
                self.fs.rm(p)

    # -- raw bytes ----------------------------------------------------------------------------
    def _write_bytes(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self.is_local:
            atomic_write(path, data)
        else:
            with self.fs.open(path, "wb") as f:
                f.write(data)

    def _read_bytes(self, path: str) -> bytes:
        with self.fs.open(path, "rb") as f:
            return f.read()

    # -- waveforms ----------------------------------------------------------------------------
    def save_waveform(self, asset: str, video_id: str, waveform: np.ndarray) -> str:
        """Store a 16 kHz mono waveform as 16-bit FLAC; returns its URL (for `read_waveform`)."""
        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, np.clip(waveform, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="FLAC")
        path = self.path(asset, video_id, ".flac")
        self._write_bytes(path, buf.getvalue())
        return path if self.is_local else self._full_url(path)

    @contextmanager
    def writing_waveform(self, asset: str, video_id: str) -> Iterator[tuple[Path, str]]:
        """(a local file to write the 16 kHz FLAC into, the URL it will have): on success the file
        becomes the stored waveform (renamed into place here, uploaded to object storage), on any
        failure nothing is left, and an older waveform stays whole."""
        final = self.path(asset, video_id, ".flac")
        if self.is_local:
            Path(final).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(final).with_name(f".{Path(final).name}.{uuid.uuid4().hex}.tmp")
        else:
            fd, name = tempfile.mkstemp(prefix=f"{video_id}.", suffix=".flac")
            os.close(fd)
            tmp = Path(name)
        try:
            yield tmp, (final if self.is_local else self._full_url(final))
            if self.is_local:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, final)
            else:
                self.fs.put_file(str(tmp), final)
        finally:
            tmp.unlink(missing_ok=True)

    def has_waveform(self, asset: str, video_id: str) -> bool:
        return self.fs.exists(self.path(asset, video_id, ".flac"))

    def delete_waveform(self, asset: str, video_id: str) -> int:
        """Remove a stored waveform (the asset's other artifacts stay); the bytes freed."""
        path = self.path(asset, video_id, ".flac")
        try:
            size = int(self.fs.size(path))
        except FileNotFoundError:
            return 0
        self.fs.rm(path)
        return size

    def _full_url(self, path: str) -> str:
        protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, tuple) else self.fs.protocol
        return f"{protocol}://{path}"

    # -- typed save/load ----------------------------------------------------------------------
    def save(self, asset: str, video_id: str, obj: Any) -> str:
        """Store `obj` for (asset, video id); return its path."""
        tp = type(obj)
        path = self.path(asset, video_id, _suffix(tp))
        if isinstance(obj, Audio):
            import soundfile as sf

            buf = io.BytesIO()
            pcm = np.clip(obj.waveform, -1.0, 1.0)
            sf.write(buf, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            # the sidecar first: the main file's presence means both are complete
            self._write_bytes(self.path(asset, video_id, ".meta.json"), json.dumps(asdict(obj.meta)).encode())
            self._write_bytes(path, buf.getvalue())
        elif isinstance(obj, PassageVectors):
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(obj.vectors, dtype=np.float32), allow_pickle=False)
            meta = {"video_id": obj.video_id, "model": obj.model}
            self._write_bytes(self.path(asset, video_id, ".meta.json"), json.dumps(meta).encode())
            self._write_bytes(path, buf.getvalue())
        else:
            self._write_bytes(path, TypeAdapter(tp).dump_json(obj))
        return path

    def load_audio_meta(self, video_id: str, asset: str = "audio") -> VideoMeta:
        """The metadata stored beside a video's audio, without reading the waveform."""
        return VideoMeta(**json.loads(self._read_bytes(self.path(asset, video_id, ".meta.json"))))

    def load(self, asset: str, video_id: str, tp: type[T]) -> T:
        path = self.path(asset, video_id, _suffix(tp))
        if tp is Audio:
            import soundfile as sf

            wav, sr = sf.read(io.BytesIO(self._read_bytes(path)), dtype="float32", always_2d=False)
            if sr != SAMPLE_RATE:
                raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, found {sr}")
            meta = self.load_audio_meta(video_id, asset)
            return Audio(meta=meta, waveform=wav)  # type: ignore[return-value]
        if tp is PassageVectors:
            vectors = np.load(io.BytesIO(self._read_bytes(path)), allow_pickle=False)
            meta = json.loads(self._read_bytes(self.path(asset, video_id, ".meta.json")))
            return PassageVectors(video_id=meta["video_id"], model=meta["model"], vectors=vectors)  # type: ignore[return-value]
        return TypeAdapter(tp).validate_json(self._read_bytes(path))


def read_waveform(url: str) -> np.ndarray:
    """A waveform stored by `ArtifactStore.save_waveform` (or any 16 kHz mono WAV/FLAC), by URL."""
    import soundfile as sf

    with fsspec.open(url, "rb") as f:  # decoded from the file as it is read: no copy of the encoded bytes
        wav, sr = sf.read(f, dtype="float32", always_2d=False)
    if sr != SAMPLE_RATE or wav.ndim != 1:
        raise ValueError(f"{url}: expected {SAMPLE_RATE} Hz mono, found {sr} Hz with shape {wav.shape}")
    return wav
