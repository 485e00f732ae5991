"""Decode any media file to 16 kHz mono with PyAV (in process, no subprocess).

Frames are streamed through one resampler, 1 s at a time, into a sink: `decode_to_16k_mono`
gathers them into one array of its final size (~350 MB at 16 kHz float32 for a 1.5 h talk, not a
list of thousands of small ones); `decode_to_flac` writes them to a 16-bit FLAC file as they come,
so a run that stores a talk's audio holds a second of it at a time, whatever the talk's length.
Every failure is a `DecodeError` naming the video and the cause: an empty file, a web page or
text where media was expected, no audio stream, truncated or corrupt media.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chaffee_assets.lib.errors import DecodeError
from chaffee_assets.lib.types import SAMPLE_RATE

if TYPE_CHECKING:
    import av.container
    import av.stream

log = logging.getLogger(__name__)

_SNIFF_BYTES = 1024
# A decode is "truncated" when it is this much shorter than the duration the container declares.
_TRUNCATION_RATIO = 0.9
_TRUNCATION_MIN_GAP_S = 1.0


def sniff_non_media(head: bytes) -> str | None:
    """A description of what `head` (a file's first bytes) is when it is plainly not media."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<"):
        if any(tag in text for tag in (b"<!doctype html", b"<html", b"<head", b"<body")):
            return "an HTML page, not media (the URL served a web page?)"
        return "an XML or markup document (a feed or a page?), not media"
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # binary; a character cut at the end of the prefix is still text
            return None
        decoded = head[: e.start].decode("utf-8")
    if decoded and all(c.isprintable() or c in "\t\r\n" for c in decoded):
        return "a text file, not media"
    return None


def _check_file(path: Path, video_id: str) -> None:
    if not path.is_file():
        raise DecodeError(video_id, f"media file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise DecodeError(video_id, f"empty file (0 bytes): {path.name}")
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
    what = sniff_non_media(head)
    if what:
        raise DecodeError(video_id, f"{path.name} is {what}")
    # WAV declares its length only in the RIFF header, and FFmpeg trusts the file size instead
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        riff = int.from_bytes(head[4:8], "little")
        if riff not in (0, 0xFFFFFFFF) and riff + 8 > size + 1:  # 0 / ~0: written as a stream
            raise DecodeError(video_id, f"truncated WAV {path.name}: the header declares {riff + 8} bytes, "
                                        f"the file has {size}")


def _open(path: Path, video_id: str) -> av.container.InputContainer:
    import av

    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise DecodeError(video_id, f"not a readable media file, or corrupt ({path.name}): {e}") from e


def _audio_stream(container: av.container.InputContainer, path: Path, video_id: str) -> av.stream.Stream:
    if not container.streams.audio:
        kinds = [s.type for s in container.streams] or ["none"]
        raise DecodeError(video_id, f"no audio stream in {path.name} (streams: {', '.join(kinds)})")
    return container.streams.audio[0]


def _declared_seconds(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """The duration the file declares for its audio (stream first, then container), if any."""
    import av

    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def probe_duration(path: str | Path, video_id: str) -> float:
    """Seconds of audio the file declares, read from its headers (no decoding)."""
    path = Path(path)
    _check_file(path, video_id)
    with _open(path, video_id) as container:
        stream = _audio_stream(container, path, video_id)
        seconds = _declared_seconds(container, stream)
    if seconds is None:
        raise DecodeError(video_id, f"{path.name} does not declare its duration")
    return seconds


class _Samples:
    """A float32 buffer that grows by doubling; `finish` trims it in place."""

    def __init__(self, capacity: int):
        self.data = np.empty(max(capacity, SAMPLE_RATE), dtype=np.float32)
        self.n = 0

    def append(self, chunk: np.ndarray) -> None:
        end = self.n + chunk.size
        if end > self.data.size:
            grown = np.empty(max(end, 2 * self.data.size), dtype=np.float32)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.data[self.n : end] = chunk
        self.n = end

    def finish(self) -> np.ndarray:
        self.data.resize((self.n,), refcheck=False)  # shrink without a copy
        np.clip(self.data, -1.0, 1.0, out=self.data)
        return self.data


def decode_to_16k_mono(path: str | Path, video_id: str, *, start: float | None = None, end: float | None = None) -> np.ndarray:
    """The file's first audio stream as a float32 array, 16 kHz, mono, in [-1, 1]; with `start` /
    `end`, only those seconds of it (decoding stops at `end`)."""
    path = Path(path)
    samples: _Samples | None = None

    def begin(declared: float | None) -> None:
        nonlocal samples
        samples = _Samples(int((declared or 600.0) * SAMPLE_RATE * 1.02))

    stop = int(end * SAMPLE_RATE) if end is not None else None
    _decode(path, video_id, begin, lambda chunk: samples.append(chunk), stop)
    wav = samples.finish()
    if start is None and end is None:
        return wav
    return wav[int((start or 0.0) * SAMPLE_RATE) : stop].copy()


def decode_to_flac(path: str | Path, video_id: str, out: str | Path) -> float:
    """The file's first audio stream written to `out` as 16 kHz mono 16-bit FLAC, a second at a
    time (nothing of the talk is held in memory); its seconds."""
    import soundfile as sf

    with sf.SoundFile(str(out), "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16", format="FLAC") as f:
        n = _decode(Path(path), video_id, lambda declared: None, lambda chunk: f.write(np.clip(chunk, -1.0, 1.0)), None)
    return n / SAMPLE_RATE


def _decode(path: Path, video_id: str, begin, sink, stop: int | None) -> int:
    """Stream the first audio stream through the resampler into `sink` (float32 chunks); `begin`
    gets the declared duration first. Returns the samples decoded. The one decoder of the project."""
    import av

    _check_file(path, video_id)
    with _open(path, video_id) as container:
        stream = _audio_stream(container, path, video_id)
        declared = _declared_seconds(container, stream)
        begin(declared)
        # 1 s output frames: 50x fewer Python round trips than Opus's 20 ms frames
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE, frame_size=SAMPLE_RATE)
        bad_packets, first_error = 0, None
        n = 0

        def push(frame: av.AudioFrame | None) -> None:
            nonlocal n
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                sink(chunk)
                n += chunk.size

        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:  # one corrupt packet: counted, reported below
                    bad_packets += 1
                    first_error = first_error or e
                    continue
                for frame in frames:
                    push(frame)
                if stop is not None and n >= stop:
                    break  # a clip: the rest is not needed
            push(None)
        except av.error.FFmpegError as e:
            raise DecodeError(
                video_id, f"corrupt media in {path.name} after {n / SAMPLE_RATE:.1f} s: {e}"
            ) from e

    seconds = n / SAMPLE_RATE
    if n == 0:
        cause = f": {first_error}" if first_error else ""
        raise DecodeError(video_id, f"no audio could be decoded from {path.name}{cause}")
    truncated = declared and seconds < declared * _TRUNCATION_RATIO and declared - seconds > _TRUNCATION_MIN_GAP_S
    if stop is None and truncated:
        raise DecodeError(
            video_id,
            f"truncated or corrupt media: decoded {seconds:.1f} s of the {declared:.1f} s {path.name} declares"
            + (f" ({bad_packets} undecodable packets, first: {first_error})" if bad_packets else ""),
        )
    if bad_packets:
        log.warning("video %s: %d undecodable packets skipped in %s (first: %s)", video_id, bad_packets,
                    path.name, first_error)
    log.debug("video %s: decoded %.1f s from %s (%s, %d Hz, %d ch)", video_id, seconds, path.name,
              stream.codec_context.name, stream.codec_context.sample_rate or 0, stream.codec_context.channels or 0)
    return n
