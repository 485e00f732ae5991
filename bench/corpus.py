"""A deterministic benchmark channel of long talks, built from the real speech in the fixtures.

    python bench/corpus.py [--videos 12] [--min-minutes 5] [--max-minutes 15] [--scale 1.0]
                           [--out bench/out/corpus] [--serve]

Default: 12 videos of 5–15 minutes (durations evenly spread, shuffled with a fixed seed), every
fourth one an interview. Monologues (9) are jfk.flac's phrases (cut at its pauses) in a seeded
order; interviews (3) are sample.wav's two speakers, turn by turn as sample.rttm gives them. Each
phrase or turn gets light deterministic variation: gain (±3 dB), tempo (±2 %, by resampling),
the pause before it (0.25–1.2 s, a longer break every few phrases), over a faint noise floor.
Files are 16 kHz mono FLAC, described by an RSS feed (`testing.demo_channel.write_feed`/`make_item`)
and served on 127.0.0.1 (`testing.demo_channel.serve`). `--scale 0.1` gives 0.5–1.5 minute videos.

The same arguments give byte-identical files; a corpus already built with them is reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from chaffee_assets.lib.files import atomic_write  # noqa: E402
from chaffee_assets.lib.types import SAMPLE_RATE  # noqa: E402
from chaffee_assets.testing.demo_channel import FEED_NAME, DemoItem, make_item, serve, write_feed  # noqa: E402

SR = SAMPLE_RATE
SEED = 20240601
FIRST_DAY = dt.date(2024, 2, 1)
DEFAULT_OUT = REPO / "bench" / "out" / "corpus"
CORPUS_FORMAT = 2  # bump when the way files are built changes


@dataclass(frozen=True)
class CorpusSpec:
    videos: int = 12
    min_minutes: float = 5.0
    max_minutes: float = 15.0
    scale: float = 1.0
    interview_every: int = 4  # every n-th video (the n-th, 2n-th, …) is an interview
    seed: int = SEED

    def durations(self) -> list[float]:
        """Seconds per video: evenly spread between the bounds, in a seeded order."""
        lo, hi = self.min_minutes * 60 * self.scale, self.max_minutes * 60 * self.scale
        spread = np.linspace(lo, hi, self.videos) if self.videos > 1 else np.array([(lo + hi) / 2])
        order = np.random.default_rng(self.seed).permutation(self.videos)
        return [round(float(spread[i]), 1) for i in order]

    def speakers(self, index: int) -> int:
        return 2 if self.interview_every and (index + 1) % self.interview_every == 0 else 1

    def key(self) -> str:
        return hashlib.sha1(json.dumps({**asdict(self), "format": CORPUS_FORMAT}, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Corpus:
    folder: Path
    items: list[DemoItem]

    @property
    def audio_seconds(self) -> float:
        return sum(i.duration_s for i in self.items)


# -- speech material ----------------------------------------------------------------------------


def jfk_phrases(fixtures: Path) -> list[np.ndarray]:
    """jfk.flac (16 kHz mono) cut at its pauses: "And so, my fellow Americans," / "ask not…" / …"""
    from chaffee_assets.lib.media.decode import decode_to_16k_mono
    from chaffee_assets.lib.models.vad import speech_regions

    wav = decode_to_16k_mono(fixtures / "jfk.flac", "corpus-jfk")
    regions = speech_regions(wav, min_silence_ms=250, pad_ms=80)
    return [wav[int(a * SR) : int(b * SR)].copy() for a, b in regions]


def sample_turns(fixtures: Path) -> list[np.ndarray]:
    """sample.wav's turns in order (sample.rttm), skipping turns inside a longer one (overlaps)."""
    from chaffee_assets.lib.media.decode import decode_to_16k_mono

    wav = decode_to_16k_mono(fixtures / "sample.wav", "corpus-sample")
    turns = []
    for line in (fixtures / "sample.rttm").read_text().splitlines():
        f = line.split()
        turns.append((float(f[3]), float(f[3]) + float(f[4])))
    turns.sort()
    kept: list[tuple[float, float]] = []
    for a, b in turns:
        if kept and b <= kept[-1][1]:
            continue
        kept.append((a, b))
    return [wav[int(a * SR) : int(b * SR)].copy() for a, b in kept]


# -- building one talk ----------------------------------------------------------------------------


def vary(unit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light variation: gain ±3 dB and tempo ±2 % (linear resampling)."""
    tempo = rng.uniform(0.98, 1.02)
    n = max(1, int(round(unit.size / tempo)))
    out = np.interp(np.linspace(0, unit.size - 1, n), np.arange(unit.size), unit).astype(np.float32)
    return out * np.float32(10 ** (rng.uniform(-3.0, 3.0) / 20))


def talk(units: list[np.ndarray], seconds: float, rng: np.random.Generator, in_order: bool) -> np.ndarray:
    """`seconds` of speech made of `units` (cycled in order, or in seeded shuffles), with pauses."""
    target = int(seconds * SR)
    out = np.zeros(target, dtype=np.float32)
    pos = int(rng.uniform(0.3, 1.0) * SR)
    order: list[int] = []
    n = 0
    while True:
        if not order:
            order = list(range(len(units))) if in_order else list(rng.permutation(len(units)))
        piece = vary(units[order.pop(0)], rng)
        if pos + piece.size > target - int(0.5 * SR):
            break
        out[pos : pos + piece.size] = piece
        n += 1
        pause = rng.uniform(1.5, 3.0) if n % 7 == 0 else rng.uniform(0.25, 1.2)
        pos += piece.size + int(pause * SR)
    out += rng.normal(0.0, 10 ** (-60 / 20), target).astype(np.float32)  # a faint noise floor
    return np.clip(out, -1.0, 1.0)


def write_flac(path: Path, wave: np.ndarray) -> None:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="FLAC", subtype="PCM_16")
    atomic_write(path, buf.getvalue())


# -- the corpus -----------------------------------------------------------------------------------


def find_fixtures() -> Path:
    from chaffee_assets.testing import fixtures_dir

    return fixtures_dir()


def build_corpus(spec: CorpusSpec, out: Path = DEFAULT_OUT, fixtures: Path | None = None,
                 log: Callable[[str], None] = print) -> Corpus:
    """Write (or reuse) the corpus described by `spec` into `out/<key>/`."""
    folder = Path(out) / f"{spec.videos}v-{spec.key()}"
    manifest = folder / "corpus.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("spec") == asdict(spec) and all((folder / i["filename"]).exists() for i in data["items"]):
            return Corpus(folder, [DemoItem(**i) for i in data["items"]])
    t0 = time.perf_counter()
    fixtures = fixtures or find_fixtures()
    folder.mkdir(parents=True, exist_ok=True)
    phrases, turns = jfk_phrases(fixtures), sample_turns(fixtures)
    items = []
    for i, seconds in enumerate(spec.durations()):
        rng = np.random.default_rng([spec.seed, i])
        two = spec.speakers(i) == 2
        vid = f"talk-{i + 1:02d}"
        wave = talk(turns if two else phrases, seconds, rng, in_order=two)
        path = folder / f"{vid}.flac"
        write_flac(path, wave)
        kind = "interview" if two else "talk"
        title = f"{kind.capitalize()} {i + 1}: {seconds / 60:.1f} minutes"
        items.append(make_item(path, vid, title, (FIRST_DAY + dt.timedelta(days=i)).isoformat(),
                               speakers=2 if two else 1, description=f"benchmark {kind}, {seconds:.0f} s"))
    manifest.write_text(json.dumps({"spec": asdict(spec), "items": [asdict(i) for i in items]}, indent=1))
    log(f"corpus: {len(items)} videos, {sum(i.duration_s for i in items) / 60:.1f} min of audio, "
        f"built in {time.perf_counter() - t0:.1f} s in {folder}")
    return Corpus(folder, items)


def serve_corpus(corpus: Corpus) -> tuple[str, Callable[[], None]]:
    """Serve the corpus folder on 127.0.0.1; (feed URL, stop). The feed names the served URLs."""
    base_url, stop = serve(corpus.folder)
    try:
        write_feed(corpus.items, base_url, corpus.folder / FEED_NAME, title="Benchmark channel")
    except BaseException:
        stop()
        raise
    return f"{base_url}/{FEED_NAME}", stop


def add_corpus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", type=int, default=12, help="number of videos (default 12)")
    p.add_argument("--min-minutes", type=float, default=5.0, help="shortest video (default 5)")
    p.add_argument("--max-minutes", type=float, default=15.0, help="longest video (default 15)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every duration (0.1: 0.5–1.5 min videos)")
    p.add_argument("--interview-every", type=int, default=4, help="every n-th video has two speakers (0: none)")
    p.add_argument("--corpus-dir", type=Path, default=DEFAULT_OUT, help="where corpora are built")


def spec_from_args(args: argparse.Namespace) -> CorpusSpec:
    return CorpusSpec(videos=args.videos, min_minutes=args.min_minutes, max_minutes=args.max_minutes,
                      scale=args.scale, interview_every=args.interview_every)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_corpus_arguments(p)
    p.add_argument("--serve", action="store_true", help="serve it on 127.0.0.1 until Ctrl-C")
    args = p.parse_args(argv)
    corpus = build_corpus(spec_from_args(args), args.corpus_dir)
    for i in corpus.items:
        print(f"{i.video_id}  {i.duration_s / 60:5.1f} min  {i.speakers} speaker(s)  {i.filename}")
    print(f"{len(corpus.items)} videos, {corpus.audio_seconds / 3600:.2f} h of audio in {corpus.folder}")
    if args.serve:
        feed, stop = serve_corpus(corpus)
        print(f"feed: {feed}  (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
