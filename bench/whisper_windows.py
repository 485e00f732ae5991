"""How whisper's windows are cut, scored against a reference (not a test; prints a table).

    .venv/bin/python bench/whisper_windows.py [--talks 4] [--clips 20] [--gaps 2,3,4,8] [--model tiny.en]

Seeded talks of whole jfk.flac clips (each at ±3 dB, pauses of 0.3-6 s between them, a faint noise
floor), so the reference is jfk.txt once per clip. Each talk's speech regions are found once (as
the model service does), then decoded:

- as the service does: the regions joined into clips of the audio while the pause between them is
  at most the gap (`asr.whisper_clips`; `MAX_GAP_SECONDS` is the default), one row per gap;
- as faster-whisper's own VAD path does (the checkout before the model service): its VAD again,
  the speech packed into 30 s chunks with the silences between regions cut out.

Errors are summed over the talks (substitutions, deletions, insertions against the reference),
with the windows decoded and the seconds spent (one process, the same model, one after the other).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics import normalise, table  # noqa: E402

from chaffee_assets.lib.models import asr, vad  # noqa: E402
from chaffee_assets.lib.models.runtime import ModelRuntime  # noqa: E402
from chaffee_assets.lib.models.threads import available_cores  # noqa: E402
from chaffee_assets.lib.types import SAMPLE_RATE, AsrOptions, Audio, VideoMeta  # noqa: E402
from chaffee_assets.lib.voices import read_audio  # noqa: E402

PACKED = "packed by faster-whisper's VAD"


def talk(clip: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    parts: list[np.ndarray] = []
    for _ in range(n):
        parts += [clip * np.float32(10 ** (rng.uniform(-3, 3) / 20)),
                  np.zeros(int(rng.uniform(0.3, 6.0) * SAMPLE_RATE), np.float32)]
    wave = np.concatenate(parts)
    return wave + rng.normal(0, 1e-3, wave.size).astype(np.float32)


def main() -> int:
    import jiwer

    from chaffee_assets.testing import fixtures_dir

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--talks", type=int, default=4)
    p.add_argument("--clips", type=int, default=20, help="jfk clips per talk")
    p.add_argument("--gaps", default="2,3,4,8", help="longest pauses inside one window, seconds")
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--fixtures", type=Path, default=None)
    args = p.parse_args()
    fixtures = args.fixtures or fixtures_dir()
    clip = read_audio(fixtures / "jfk.flac")
    reference = " ".join([normalise((fixtures / "jfk.txt").read_text())] * args.clips)
    runtime = ModelRuntime.resolve("cpu", "~/.cache/chaffee_assets/models", available_cores())
    tr = asr.Transcriber(AsrOptions(model=args.model), runtime)
    ways: list[tuple[str, float | None]] = [(f"clips, pauses <= {float(g):g} s", float(g)) for g in args.gaps.split(",")]
    ways.append((PACKED, None))
    totals = {name: [0, 0, 0.0] for name, _ in ways}
    for seed in range(args.talks):
        wave = talk(clip, args.clips, seed)
        audio = Audio(VideoMeta(f"talk{seed}", f"talk{seed}", "file:///bench"), wave)
        regions = vad.speech_regions(wave, max_region_s=30.0)
        for name, gap in ways:
            started = time.perf_counter()
            if gap is None:
                out = tr.transcribe(audio)  # faster-whisper's VAD and chunks
            else:
                asr.MAX_GAP_SECONDS = gap  # the one knob measured
                out = tr.transcribe(audio, regions)
            m = jiwer.process_words(reference, normalise(out.text))
            t = totals[name]
            t[0] += m.substitutions + m.deletions + m.insertions
            t[1] += out.info.segments
            t[2] += time.perf_counter() - started
    words = len(reference.split()) * args.talks
    table(f"{args.talks} talks of {args.clips} jfk clips ({words} reference words), {args.model}",
          ["windows cut", "errors", "WER", "windows", "seconds"],
          [[name, e, f"{e / words:.4f}", w, f"{s:.1f}"] for name, (e, w, s) in totals.items()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
