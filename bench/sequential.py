"""The old pipeline, for comparison: one process, one video at a time, every phase in turn.

    python bench/sequential.py --feed URL --database-url URL [--out report.json] [--limit N]

What ORIGINAL_ANALYSIS.md describes, with this project's models and settings (read from the
environment like the project's: WHISPER_MODEL, EMBEDDING_MODEL, PYANNOTE_MODEL, BATCH_SIZE, …):
models loaded once for the process; then for each video of the feed, oldest first:

1. download and decode (`lib.download.fetch_audio`, from the same server as the project)
2. Whisper ASR (`lib.asr.Transcriber`)
3. pyannote diarization on EVERY video (`lib.diarize.Diarizer`, method `pyannote`: the project's
   pyannote configuration, no monologue fast path)
4. ECAPA speaker naming (`lib.labels.SpeakerNamer`)
5. passages (`lib.segment.build_passages`, bounded by the embedding model's tokenizer)
6. that video's passages embedded alone (`lib.embed.TextEmbedder`)
7. database insertion the old way: plain INSERT statements, one per segment and one per vector,
   into its own database (the HNSW index exists after the first video, as in a live archive).

Writes a JSON report (process start, model loads, per-video stage intervals and model-call
intervals, epoch seconds) that bench/throughput.py reads; prints one line per video.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chaffee_assets.lib import clock  # noqa: E402
from chaffee_assets.settings import Settings  # noqa: E402


class Loader:
    """Builds each model once, recording how long it took."""

    def __init__(self) -> None:
        self.loads: list[list] = []

    def __call__(self, kind: str, build):
        t0 = time.time()
        model = build()
        self.loads.append([kind, t0, time.time()])
        return model


def load_models(settings: Settings) -> tuple[dict, list[list]]:
    from chaffee_assets.lib.models.asr import Transcriber
    from chaffee_assets.lib.models.diarize import Diarizer
    from chaffee_assets.lib.models.ecapa import EcapaEmbedder
    from chaffee_assets.lib.models.runtime import ModelRuntime
    from chaffee_assets.lib.models.text_embed import TextEmbedder
    from chaffee_assets.lib.models.threads import limit_torch_threads, threads_per_model
    from chaffee_assets.lib.speakers import SpeakerNamer
    from chaffee_assets.lib.types import AsrOptions, DiarizationOptions
    from chaffee_assets.lib.voices import load_profiles

    load = Loader()
    # one model computes at a time: it may use every core (not CTranslate2's default of 4 threads)
    runtime = ModelRuntime.resolve(settings.device, settings.model_cache_dir, threads_per_model(settings.model_threads, 1))
    asr = AsrOptions(model=settings.whisper_model, batch_size=settings.whisper_batch_size, language=settings.whisper_language)
    if not runtime.on_cuda:
        limit_torch_threads(runtime.threads)
    m = {"transcriber": load("whisper", lambda: Transcriber(asr, runtime))}
    ecapa = load("ecapa", lambda: EcapaEmbedder(runtime))
    # the project's `pyannote` method: same options, pyannote on every video
    options = DiarizationOptions(method="pyannote", pyannote_model=settings.pyannote_model)
    m["diarizer"] = Diarizer(options, ecapa)
    with clock.step_clock() as c:  # the pyannote pipeline is built lazily: build it now, once
        m["diarizer"].load_pyannote()
    load.loads += [list(x) for x in c.loads]
    profiles = load_profiles(Path(settings.voices_dir), ecapa.model_id)
    m["namer"] = SpeakerNamer(ecapa, profiles, threshold=settings.voice_threshold, host=settings.host_speaker)
    m["embedder"] = load(settings.embedding_model, lambda: TextEmbedder(settings.embedding_model, runtime, settings.batch_size))
    return m, load.loads


def insert_rows(conn, meta, passages, vectors) -> None:
    """The old write path: the video's row, then one INSERT per segment and one per vector."""
    from chaffee_assets.archive import writer

    writer.upsert_video_meta(conn, meta)
    with conn.transaction():
        conn.execute("INSERT INTO embedding_models (model, dim) VALUES (%s, %s) ON CONFLICT (model) DO NOTHING",
                     (vectors.model, vectors.dim))
        conn.execute("DELETE FROM segments WHERE video_id = %s", (meta.video_id,))
        for p in passages.passages:
            conn.execute(
                "INSERT INTO segments (video_id, ordinal, start_s, end_s, speaker, text) VALUES (%s, %s, %s, %s, %s, %s)",
                (p.video_id, p.ordinal, float(p.start), float(p.end), p.speaker, p.text),
            )
        for p, v in zip(passages.passages, vectors.vectors, strict=True):
            conn.execute(
                "INSERT INTO segment_vectors (video_id, ordinal, model, embedding) VALUES (%s, %s, %s, %s)",
                (p.video_id, p.ordinal, vectors.model, v),
            )


@contextmanager
def stage(stages: dict[str, list[float]], name: str, model: str | None = None):
    """Record the stage's interval; `model`: the model computing in it (nested calls recorded apart)."""
    t0 = time.time()
    if model:
        with clock.model_call(model):
            yield
    else:
        yield
    stages[name] = [t0, time.time()]


def one_video(entry, models: dict, conn, workdir: Path, options, first: bool) -> dict:
    """Every phase of one video, in turn."""
    from chaffee_assets.archive import writer
    from chaffee_assets.lib.media.download import fetch_audio
    from chaffee_assets.lib.passages import build_passages

    vid, embedder = entry.video_id, models["embedder"]
    stages: dict[str, list[float]] = {}
    with clock.step_clock() as c:
        with stage(stages, "audio"):
            audio = fetch_audio(entry.url, vid, workdir, title=entry.title, upload_date=entry.upload_date)
        with stage(stages, "transcript", "whisper"):
            transcript = models["transcriber"].transcribe(audio)
        with stage(stages, "diarization", "silero-vad"):  # pyannote and ECAPA inside are recorded apart
            diarization = models["diarizer"].diarize(audio)
        with stage(stages, "speaker_labels"):
            labels = models["namer"].label(audio, transcript, diarization)
        with stage(stages, "segments"):
            passages = build_passages(vid, labels.words, options, embedder.count_tokens)
        with stage(stages, "embeddings", embedder.model_id):
            vectors = embedder.embed_videos({vid: passages})[vid]
        with stage(stages, "db_rows"):
            insert_rows(conn, audio.meta, passages, vectors)
        if first and passages.passages:  # a live archive has its index: later inserts maintain it
            with stage(stages, "index"):
                writer.build_index(conn, vectors.model)
    return {"video_id": vid, "audio_seconds": audio.seconds, "speakers": diarization.speakers,
            "passages": len(passages.passages), "stages": stages, "models": [list(x) for x in c.intervals]}


def run(settings: Settings, feed: str, database_url: str, workdir: Path, limit: int = 0,
        progress=print) -> dict:
    from chaffee_assets.archive import db
    from chaffee_assets.lib.media.feed import list_channel
    from chaffee_assets.lib.types import PassageOptions

    started = clock.process_started_at()
    models, loads = load_models(settings)
    ready = time.time()
    progress(f"sequential: models ready {ready - started:.1f} s after process start "
             f"({', '.join(f'{k} {b - a:.1f} s' for k, a, b in loads)})")
    options = PassageOptions(max_seconds=settings.passage_max_seconds,
                             max_tokens=min(settings.passage_max_tokens, models["embedder"].max_tokens))
    entries = list_channel(feed)[: limit or None]
    videos = []
    with db.connect(database_url) as conn:
        for n, entry in enumerate(entries, 1):
            v = one_video(entry, models, conn, workdir, options, first=n == 1)
            videos.append(v)
            progress(f"[{n}/{len(entries)}] {v['video_id']}: {v['audio_seconds'] / 60:.1f} min, {v['speakers']} speakers, "
                     + ", ".join(f"{k} {b - a:.1f}s" for k, (a, b) in v["stages"].items()))
    return {"side": "sequential", "process_started_at": started, "models_ready_at": ready, "loads": loads,
            "finished_at": time.time(), "videos": videos, "pid": os.getpid()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--feed", required=True, help="the channel feed URL (bench/corpus.py --serve prints one)")
    p.add_argument("--database-url", required=True, help="a migrated archive database of its own")
    p.add_argument("--workdir", type=Path, default=None, help="download folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--limit", type=int, default=0, help="only the first N videos")
    args = p.parse_args(argv)

    import tempfile

    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="chaffee-seq-") as tmp:
        report = run(settings, args.feed, args.database_url, args.workdir or Path(tmp), args.limit,
                     progress=lambda s: print(s, flush=True))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report))
    total = sum(v["audio_seconds"] for v in report["videos"])
    wall = report["finished_at"] - report["process_started_at"]
    print(f"sequential: {len(report['videos'])} videos, {total / 60:.1f} min of audio in {wall:.0f} s "
          f"({total / wall:.2f} h of audio per hour)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
