"""Peak memory of a run's `audio` step by talk length, before and after streaming the decode
into the stored FLAC, side by side in one invocation.

A thin run holds no model; what grew with the talk was the waveform: `fetch_audio` decoded the
whole talk into a float32 array (~230 MB an hour) and `save_waveform` clipped and encoded it in
memory. `fetch_audio_file` decodes a second at a time straight into the stored FLAC. Each side
runs in a fresh process (peak RSS from the kernel: VmHWM of the process's own address space;
`ru_maxrss` would carry the parent's high-water mark over the fork) on the same files: real speech
(the JFK excerpt and the pyannote sample, spliced end to end) encoded as AAC in .m4a at 48 kHz
stereo, as YouTube serves it, read from a local path.

    python bench/run_memory.py [--minutes 10,60,90]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from chaffee_assets.lib.artifacts import ArtifactStore

def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

side, src, root = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
store = ArtifactStore(root)
base = hwm_kb()
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as work:
    if side == "before":
        from chaffee_assets.lib.media.download import fetch_audio
        audio = fetch_audio(str(src), "talk", Path(work), allow_local=True)
        store.save_waveform("audio", "talk", audio.waveform)
        seconds = audio.meta.duration_s
        del audio
    else:
        from chaffee_assets.lib.media.download import fetch_audio_file
        with store.writing_waveform("audio", "talk") as (flac, url):
            seconds = fetch_audio_file(str(src), "talk", Path(work), flac, allow_local=True).duration_s
peak = hwm_kb()
size = store.fs.size(store.path("audio", "talk", ".flac"))
print(json.dumps({"peak_mb": peak / 1024, "base_mb": base / 1024, "seconds": seconds, "wall": time.perf_counter() - t0, "flac_bytes": size}))
"""


def make_talk(minutes: int, out: Path) -> Path:
    """`minutes` of real speech (the fixtures spliced with short pauses), AAC in .m4a."""
    import av
    import numpy as np

    from chaffee_assets.lib.media.decode import decode_to_16k_mono
    from chaffee_assets.testing import fixtures_dir

    fx = fixtures_dir()
    pause = np.zeros(8000, np.float32)
    unit = np.concatenate([decode_to_16k_mono(fx / "jfk.flac", "jfk"), pause, decode_to_16k_mono(fx / "sample.wav", "s"), pause])
    wave = np.tile(unit, int(np.ceil(minutes * 60 * 16_000 / unit.size)))[: minutes * 60 * 16_000]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("aac", rate=48_000, layout="stereo")
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="stereo", rate=48_000,
                                      frame_size=stream.codec_context.frame_size or 1024)
        for i in range(0, wave.size, 16_000 * 60):  # a minute at a time
            frame = av.AudioFrame.from_ndarray(wave[i : i + 16_000 * 60].reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = 16_000
            for chunk in resampler.resample(frame):
                container.mux(stream.encode(chunk))
        for chunk in resampler.resample(None):
            container.mux(stream.encode(chunk))
        container.mux(stream.encode(None))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", default="10,60,90")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        for minutes in (int(m) for m in args.minutes.split(",")):
            src = make_talk(minutes, Path(tmp) / f"talk-{minutes}.m4a")
            out = {}
            for side in ("before", "after"):
                proc = subprocess.run([sys.executable, "-c", CHILD, side, str(src), f"{tmp}/store-{side}-{minutes}"],
                                      capture_output=True, text=True, check=True)
                out[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((minutes, out))
            b, a = out["before"], out["after"]
            print(f"{minutes:>3} min: peak RSS before {b['peak_mb']:.0f} MB, after {a['peak_mb']:.0f} MB "
                  f"({a['peak_mb'] / b['peak_mb']:.2f}x); FLAC {a['flac_bytes'] / (a['seconds'] / 3600) / 1e6:.1f} MB per audio hour "
                  f"(16-bit WAV: 115.2); decode {b['wall']:.1f} s vs {a['wall']:.1f} s", flush=True)
    print(f"\n{'talk':>6}  {'peak before MB':>14}  {'peak after MB':>13}  {'ratio':>5}  {'FLAC MB/h':>9}")
    for minutes, out in rows:
        b, a = out["before"], out["after"]
        print(f"{minutes:>4} m  {b['peak_mb']:>14.0f}  {a['peak_mb']:>13.0f}  {a['peak_mb'] / b['peak_mb']:>5.2f}  "
              f"{a['flac_bytes'] / (a['seconds'] / 3600) / 1e6:>9.1f}")


if __name__ == "__main__":
    main()
