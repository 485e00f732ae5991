"""The GPU check of the model service, sized for the lent device (one script, < 8 minutes).

It drives the service's own class (`SpeechModels`, what each Ray Serve replica hosts) directly,
with several callers in threads as the replicas serve runs: Ray cannot travel to the device (its
wheel is 79 MB), the rest of the service's code path is the same. Side by side in one run:

1. probe: torch and CUDA, nvidia-smi, faster-whisper / CTranslate2 on the GPU (its wheel is built
   for CUDA 12; the device's torch for CUDA 13), speechbrain, pyannote, sentence-transformers;
2. batched whisper RTFx on >= 30 minutes of real speech (the packaged recordings, repeated);
3. the GPU busy fraction (nvidia-smi sampled every 0.2 s) while several videos are served at once;
4. GPU memory with one resident copy of the models versus one copy per video-run (what every run
   loading its own models costs: copies made one after another, measured, extrapolated to 4 runs);
5. the text embedder's passages/s at the service's batch sizes.

Whatever cannot run there is reported as such, with the reason, and the rest is measured.

    python bench/gpu/check.py [--minutes 30] [--callers 4] [--out results.json]
    python bench/gpu/check.py --dry-run     # on a CPU, seconds of audio: the check of this script
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def probe() -> dict:
    out: dict = {"python": sys.version.split()[0]}
    try:
        import torch

        out["torch"] = torch.__version__
        out["cuda"] = bool(torch.cuda.is_available())
        out["gpu"] = torch.cuda.get_device_name(0) if out["cuda"] else None
    except Exception as e:  # noqa: BLE001 - reported, the check carries on without it
        out["torch"] = f"unavailable: {e}"
        out["cuda"] = False
    out["nvidia_smi"] = bool(shutil.which("nvidia-smi"))
    for name in ("faster_whisper", "ctranslate2", "speechbrain", "pyannote.audio", "sentence_transformers", "soundfile"):
        try:
            mod = __import__(name, fromlist=["_"])
            out[name] = getattr(mod, "__version__", "ok")
        except Exception as e:  # noqa: BLE001
            out[name] = f"unavailable: {type(e).__name__}: {e}"[:200]
    if not str(out.get("ctranslate2", "")).startswith("unavailable"):
        import ctranslate2

        try:
            out["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
        except Exception as e:  # noqa: BLE001
            out["ctranslate2_cuda_devices"] = f"error: {e}"
    return out


class GpuSampler:
    """nvidia-smi utilisation and memory every 0.2 s while inside."""

    def __init__(self, period: float = 0.2):
        self.period, self.samples = period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self):
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms",
               str(int(self.period * 1000))]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as p:
            assert p.stdout is not None
            while not self._stop.is_set():
                line = p.stdout.readline()
                if not line:
                    break
                try:
                    util, mem = (float(x) for x in line.split(","))
                    self.samples.append((time.time(), util, mem))
                except ValueError:
                    continue
            p.terminate()

    def busy_fraction(self) -> float | None:
        return sum(1 for _, u, _ in self.samples if u > 0) / len(self.samples) if self.samples else None

    def mean_utilisation(self) -> float | None:
        return sum(u for _, u, _ in self.samples) / len(self.samples) if self.samples else None


def speech(minutes: float):
    """>= `minutes` of real speech at 16 kHz: the packaged recordings, one after another, repeated."""
    import numpy as np

    from chaffee_assets.lib.media.decode import decode_to_16k_mono
    from chaffee_assets.testing import fixtures_dir

    fx = fixtures_dir()
    pause = np.zeros(8000, dtype=np.float32)
    unit = np.concatenate([decode_to_16k_mono(fx / "jfk.flac", "gpu-check"), pause,
                           decode_to_16k_mono(fx / "sample.wav", "gpu-check"), pause])
    n = int(np.ceil(minutes * 60 * 16000 / unit.size))
    return np.tile(unit, n)[: int(minutes * 60 * 16000)]


def stored(store, video_id: str, wav, models):
    from chaffee_assets.lib.types import AudioRef, VideoMeta

    url = store.save_waveform("audio", video_id, wav)
    regions = models.speech_regions(url, video_id).value
    return AudioRef(VideoMeta(video_id, video_id, url), url, wav.size / 16000, regions)


def gpu_memory() -> float | None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated() / 2**20
    except Exception:  # noqa: BLE001
        pass
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--callers", type=int, default=4, help="videos served at once")
    p.add_argument("--model-cache", default=os.environ.get("MODEL_CACHE", "~/.cache/chaffee_assets/models"))
    p.add_argument("--whisper", default="tiny.en")
    p.add_argument("--embedding", default="minilm")
    p.add_argument("--dry-run", action="store_true", help="CPU, a minute of audio, two callers: checks this script")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.dry_run:
        args.minutes, args.callers = 1.0, 2
    t_start = time.time()
    report: dict = {"probe": probe(), "measured": {}, "skipped": {}}
    device = "cuda" if report["probe"].get("cuda") and not args.dry_run else "cpu"
    print(json.dumps(report["probe"], indent=1), flush=True)

    from chaffee_assets.lib.artifacts import ArtifactStore
    from chaffee_assets.lib.models.service import ServiceConfig, SpeechModels
    from chaffee_assets.lib.types import AsrOptions, DiarizationOptions

    whisper_ok = not str(report["probe"].get("faster_whisper")).startswith("unavailable") and (
        device == "cpu" or isinstance(report["probe"].get("ctranslate2_cuda_devices"), int)
        and report["probe"]["ctranslate2_cuda_devices"] > 0)
    ecapa_ok = not str(report["probe"].get("speechbrain")).startswith("unavailable")
    text_ok = not str(report["probe"].get("sentence_transformers")).startswith("unavailable")
    warm = tuple([f"whisper:{args.whisper}"] * whisper_ok + ["ecapa"] * ecapa_ok + [f"text:{args.embedding}"] * text_ok + ["vad"] * whisper_ok)
    config = ServiceConfig(device=device, model_cache=args.model_cache, whisper_workers=args.callers, warm=())
    mem0 = gpu_memory()
    t0 = time.time()
    models = SpeechModels(config)
    for item in warm:
        try:
            models.warm(item)
        except Exception as e:  # noqa: BLE001 - reported; the rest is measured
            report["skipped"][item] = f"{type(e).__name__}: {e}"[:300]
    report["measured"]["warm_seconds"] = round(time.time() - t0, 1)
    report["measured"]["models_loaded"] = sorted(models.loads)
    mem1 = gpu_memory()
    if mem0 is not None and mem1 is not None:
        report["measured"]["gpu_mib_one_resident_copy"] = round(mem1 - mem0)

    folder = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    store = ArtifactStore(str(folder))
    wav = speech(args.minutes)
    if "whisper:" + args.whisper in models.loads and "silero-vad" in models.loads:
        audio = stored(store, "long", wav, models)
        t0 = time.time()
        tr = models.transcribe(audio, AsrOptions(model=args.whisper, batch_size=16)).value
        secs = time.time() - t0
        report["measured"]["whisper_rtfx"] = round(audio.seconds / secs, 1)
        report["measured"]["whisper_words"] = len(tr.words)
        # several videos at once, as the replica serves runs
        clips = [stored(store, f"v{i}", wav[: int(wav.size / args.callers)], models) for i in range(args.callers)]
        # the default method; the check's overlap stage needs pyannote.audio, which the device lacks
        options = DiarizationOptions(method="hybrid", monologue_overlap=False)

        def serve_one(a):
            models.transcribe(a, AsrOptions(model=args.whisper, batch_size=16))
            if ecapa_ok:
                models.diarize(a, options)
            if text_ok:
                models.embed_texts([w.text for w in tr.words[:2000]], args.embedding)

        with GpuSampler() as sampler:
            t0 = time.time()
            threads = [threading.Thread(target=serve_one, args=(a,)) for a in clips]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            concurrent = time.time() - t0
        report["measured"]["concurrent_videos"] = args.callers
        report["measured"]["concurrent_audio_rtfx"] = round(sum(a.seconds for a in clips) / concurrent, 1)
        report["measured"]["gpu_busy_fraction"] = sampler.busy_fraction()
        report["measured"]["gpu_mean_utilisation_pct"] = sampler.mean_utilisation()
    else:
        report["skipped"]["whisper"] = report["skipped"].get(f"whisper:{args.whisper}", "faster-whisper cannot run here")
    if text_ok and f"text:{args.embedding}" in models.loads:
        texts = [f"passage {i}: " + " ".join(["ketones", "the", "brain", "carnivore", "diet"] * 12) for i in range(4096)]
        rates = {}
        for bs in (64, 256, 1024):
            embedder = models.text(args.embedding)
            embedder.batch_size = bs
            t0 = time.time()
            embedder.embed_texts(texts[: max(bs * 4, 512)])
            rates[str(bs)] = round(max(bs * 4, 512) / (time.time() - t0), 1)
        report["measured"]["text_passages_per_s_by_batch"] = rates
    # one copy per video-run: what every run loading its own models costs on the accelerator
    if device == "cuda" and mem1 is not None:
        extra = SpeechModels(config)
        for item in warm:
            try:
                extra.warm(item)
            except Exception:  # noqa: BLE001 - already reported above
                pass
        per_copy = gpu_memory() - mem1
        report["measured"]["gpu_mib_per_extra_copy"] = round(per_copy)
        report["measured"]["gpu_mib_four_runs_each_with_its_copy"] = round(4 * per_copy)
        del extra
    report["seconds"] = round(time.time() - t_start, 1)
    shutil.rmtree(folder, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
