"""Model batch sizes on this CPU: seconds and peak memory per batch size for whisper (batched
pipeline), ECAPA and the text embedder, each measurement in a fresh process (peak RSS is a
process's high-water mark), the sizes alternating across repeats. What the service's CPU batch
sizes (`lib/models/runtime.py` `CPU_BATCH`) were chosen from; on a GPU larger batches pay.

    .venv/bin/python bench/cpu_batches.py [--repeats 2] [--models whisper,ecapa,text]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = {"whisper": (8, 4, 2, 1), "ecapa": (64, 16, 8, 4), "text": (256, 32, 16, 8)}


def _speech() -> np.ndarray:
    """About 4 minutes of real speech: the packaged recordings, in turn, with pauses."""
    from chaffee_assets.lib.voices import read_audio
    from chaffee_assets.testing import fixtures_dir

    parts = [read_audio(fixtures_dir() / name) for name in ("jfk.flac", "sample.wav", "german.flac")]
    pause = np.zeros(8_000, dtype=np.float32)
    out, k = [], 0
    while sum(p.size for p in out) < 240 * 16_000:
        out += [parts[k % len(parts)], pause]
        k += 1
    return np.concatenate(out)


def _child(model: str, size: int) -> dict:
    from chaffee_assets.lib.models import threads
    from chaffee_assets.lib.models.runtime import ModelRuntime
    from chaffee_assets.settings import Settings

    cores = threads.available_cores()
    runtime = ModelRuntime.resolve("cpu", Settings().model_cache_dir, cores)
    threads.share_cores(cores)
    if model == "whisper":
        from chaffee_assets.lib.models.asr import Transcriber
        from chaffee_assets.lib.models.vad import speech_regions
        from chaffee_assets.lib.types import AsrOptions, Audio, VideoMeta

        wav = _speech()
        options = AsrOptions(model="tiny.en", batch_size=size, language_check=None)
        t = Transcriber(options, runtime)
        regions = speech_regions(wav)
        t.transcribe(Audio(VideoMeta("w", "w", ""), wav[: 16_000 * 20]), [(0.0, 20.0)], options)  # warm
        work = lambda: t.transcribe(Audio(VideoMeta("v", "v", ""), wav), regions, options)  # noqa: E731
    elif model == "ecapa":
        from chaffee_assets.lib.models.ecapa import EcapaEmbedder

        wav = _speech()
        e = EcapaEmbedder(runtime)
        e.batch_size = size  # past the service's CPU cap: that is what is measured
        chunks = [wav[i : i + 32_000] for i in range(0, 100 * 24_000, 24_000)]  # 100 windows of 2 s
        e.embed(chunks[:2])
        work = lambda: e.embed(chunks)  # noqa: E731
    else:
        from chaffee_assets.lib.models.text_embed import TextEmbedder

        e = TextEmbedder("minilm", runtime)
        e.batch_size = size  # past the service's CPU cap: that is what is measured
        words = (open(os.path.join(os.path.dirname(__file__), "..", "chaffee_assets", "testing", "data", "jfk.txt")).read().split()) * 50
        rng = np.random.default_rng(0)
        texts = [" ".join(rng.choice(words, int(rng.integers(40, 200)))) for _ in range(256)]  # passages of 40-200 words
        e.embed_texts(texts[:2])
        work = lambda: e.embed_texts(texts)  # noqa: E731
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_growth_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--models", default="whisper,ecapa,text")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]))))
        return
    print(f"# Model batch sizes on the CPU ({os.cpu_count()} cores), fresh process per measurement, {args.repeats} repeats\n")
    for model in args.models.split(","):
        results: dict[int, list[dict]] = {s: [] for s in SIZES[model]}
        for r in range(args.repeats):
            for size in SIZES[model] if r % 2 == 0 else reversed(SIZES[model]):
                out = subprocess.run([sys.executable, __file__, "--child", model, str(size)], capture_output=True, text=True, check=True)
                results[size].append(json.loads(out.stdout.strip().splitlines()[-1]))
        base = statistics.median(x["seconds"] for x in results[SIZES[model][0]])
        print(f"| {model} batch | seconds (median) | ÷ batch {SIZES[model][0]} | peak memory growth MiB (median) |")
        print("| --- | --- | --- | --- |")
        for size, runs in results.items():
            s = statistics.median(x["seconds"] for x in runs)
            m = statistics.median(x["peak_growth_mib"] for x in runs)
            print(f"| {size} | {s:.1f} | {s / base:.2f} | {m:.0f} |")
        print()


if __name__ == "__main__":
    main()
