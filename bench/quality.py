"""Quality benchmark of the speech stages on the real fixture audio (not a test; prints tables).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/quality.py [--fixtures DIR]

1. ASR: WER of each packaged whisper model on jfk.flac and on sample.wav (sample.stm).
2. Diarization: DER of each method on sample.wav (sample.rttm) and its seconds.
3. The monologue check's decision on one-voice and several-voice clips built from the fixtures.
4. Speaker naming accuracy, voices enrolled from other parts of the fixtures than those scored.
5. Seconds per diarization method on one monologue, and the fast path's speed-up over pyannote.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics import normalise, table  # noqa: E402

from chaffee_assets.lib.models.asr import Transcriber
from chaffee_assets.lib.models.diarize import Diarizer
from chaffee_assets.lib.models.ecapa import EcapaEmbedder  # noqa: E402
from chaffee_assets.lib.models.runtime import ModelRuntime  # noqa: E402
from chaffee_assets.lib.speakers import SpeakerNamer  # noqa: E402
from chaffee_assets.lib.types import (  # noqa: E402
    SAMPLE_RATE,
    AsrOptions,  # noqa: E402
    Audio,
    Diarization,
    DiarizationOptions,  # noqa: E402
    Turn,
    VideoMeta,
)
from chaffee_assets.lib.voices import enroll, load_profiles, read_audio  # noqa: E402
from chaffee_assets.settings import Settings  # noqa: E402
from chaffee_assets.testing import fixtures_dir  # noqa: E402

RUNTIME = ModelRuntime.resolve("auto", Settings().model_cache_dir)

SR = SAMPLE_RATE
RTTM_NAMES = {"speaker90": "Diane", "speaker91": "Sheila"}  # sample.rttm ids -> sample.stm names


# -- helpers ----------------------------------------------------------------------------------------


def audio(video_id: str, wav: np.ndarray) -> Audio:
    return Audio(VideoMeta(video_id, video_id, "file:///bench"), np.asarray(wav, dtype=np.float32))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def join(*parts: np.ndarray, gap: float = 1.0) -> np.ndarray:
    return np.concatenate([x for p in parts for x in (p, silence(gap))])


def rttm_turns(path: Path) -> list[tuple[float, float, str]]:
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        out.append((float(f[3]), float(f[3]) + float(f[4]), RTTM_NAMES.get(f[7], f[7])))
    return out


def der(turns: list[tuple[float, float, str]], d: Diarization) -> float:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    ref, hyp = Annotation(), Annotation()
    for a, b, s in turns:
        ref[Segment(a, b)] = s
    for t in d.turns:
        hyp[Segment(t.start, t.end)] = t.speaker
    return float(DiarizationErrorRate()(ref, hyp))


# -- 1. ASR -------------------------------------------------------------------------------------------


def bench_asr(fx: Path, jfk: np.ndarray, sample: np.ndarray) -> None:
    import jiwer

    refs = {
        "jfk": normalise((fx / "jfk.txt").read_text()),
        "sample": normalise(" ".join(" ".join(line.split()[5:]) for line in (fx / "sample.stm").read_text().splitlines())),
    }
    rows = []
    for model in ("tiny.en", "base"):
        t0 = time.perf_counter()
        tr = Transcriber(AsrOptions(model=model), RUNTIME)
        load = time.perf_counter() - t0
        for name, wav in (("jfk", jfk), ("sample", sample)):
            out = tr.transcribe(audio(name, wav))
            wer = jiwer.wer(refs[name], normalise(out.text))
            rows.append([model, name, f"{100 * wer:.1f} %", out.info.language, round(out.info.processing_seconds, 2),
                         round(out.info.processing_seconds / out.info.audio_seconds, 3), round(load, 2)])
    table("ASR: word error rate (normalised text)", ["model", "audio", "WER", "lang", "seconds", "RTF", "load s"], rows)


# -- 2. diarization DER -------------------------------------------------------------------------------


def bench_der(fx: Path, sample: np.ndarray, embedder: EcapaEmbedder) -> None:
    ref = rttm_turns(fx / "sample.rttm")
    rows = []
    for label, opts in (
        ("pyannote (step 0.1)", DiarizationOptions(method="pyannote")),
        ("pyannote (step 0.5)", DiarizationOptions(method="pyannote", pyannote_step=0.5)),
        ("simple", DiarizationOptions(method="simple")),
        ("hybrid (default)", DiarizationOptions(method="hybrid")),
        ("auto", DiarizationOptions(method="auto")),
        ("off", DiarizationOptions(method="off")),
    ):
        diarizer = Diarizer(opts, embedder)
        if opts.method in ("pyannote", "auto"):  # seconds below are per-video work, models warm
            t0 = time.perf_counter()
            diarizer.load_pyannote()
            load = f"{time.perf_counter() - t0:.1f}"
        else:
            load = "-"
        d = diarizer.diarize(audio("sample", sample))
        rows.append([label, f"{100 * der(ref, d):.1f} %", d.method, d.speakers, round(d.seconds, 2), load,
                     "-" if d.monologue_score is None else round(d.monologue_score, 2)])
    table("Diarization on sample.wav (30 s, 2 speakers): DER (no collar, overlap scored)",
          ["method", "DER", "ran", "speakers", "seconds", "load s", "monologue score"], rows)


# -- 3. the monologue check ---------------------------------------------------------------------------


def monologue_clips(jfk: np.ndarray, sample: np.ndarray) -> tuple[dict, dict, dict]:
    """(one voice, several voices, stress) clips; sample.wav parts where one person talks per sample.rttm."""
    from scipy.signal import butter, sosfilt

    def cut(a: float, b: float) -> np.ndarray:
        return sample[int(a * SR) : int(b * SR)]

    def noisy(w: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return (w + rng.normal(0, np.sqrt(np.mean(w**2) / 10 ** (snr_db / 10)), w.size)).astype(np.float32)

    phone = sosfilt(butter(4, [300, 3400], btype="band", fs=SR, output="sos"), jfk).astype(np.float32)
    sheila = join(cut(14.75, 17.90), cut(21.80, 27.80))
    diane = join(cut(11.05, 14.45), cut(18.60, 21.45), cut(28.55, 30.0))
    one = {
        "jfk": jfk,
        "jfk x3, 2 s pauses": join(jfk, jfk, jfk, gap=2.0),
        "jfk + jfk at 20 dB SNR": join(jfk, noisy(jfk, 20, 0)),
        "jfk loud + jfk at -14 dB": join(jfk, 0.2 * jfk),
        "jfk + jfk phone band": join(jfk, phone),
        "Sheila only (sample)": sheila,
        "Diane only (sample)": diane,
    }
    two = {
        "sample.wav": sample,
        "sample 7.5-18 s": cut(7.5, 18.0),
        "jfk + Sheila": join(jfk, sheila),
        "jfk + Diane": join(jfk, diane),
        "Sheila + Diane": join(sheila, diane),
        "Diane + Sheila + Diane": join(cut(11.05, 14.45), cut(21.8, 27.8), cut(18.6, 21.45)),
        "jfk x3 + 6 s Sheila (15 %)": join(jfk, jfk, jfk, cut(21.8, 27.8)),
    }
    stress = {"jfk x3 at 10 dB SNR (one voice)": join(*(noisy(jfk, 10, s) for s in range(3)))}
    return one, two, stress


def bench_monologue(jfk: np.ndarray, sample: np.ndarray, embedder: EcapaEmbedder) -> None:
    """Each clip is scored 8 times, shifted by 0-1.4 s of leading silence (windows land elsewhere)."""
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    o = diarizer.options
    one, two, stress = monologue_clips(jfk, sample)
    rows, right, total = [], 0, 0
    for truth, clips in (("one", one), ("several", two), ("one (stress)", stress)):
        for name, wav in clips.items():
            t0 = time.perf_counter()
            checks = [diarizer.monologue_check(np.concatenate([silence(off), wav])) for off in np.arange(0, 1.6, 0.2)]
            seconds = (time.perf_counter() - t0) / len(checks)
            decisions = {"several" if c.decision == "several" else "one" for c in checks}
            ok = decisions == {truth.split()[0]}
            if "stress" not in truth:
                right, total = right + ok, total + 1
            scores = [c.score for c in checks]
            rows.append([name, f"{len(wav) / SR:.0f} s", truth, round(scores[0], 3), f"{min(scores):.2f}..{max(scores):.2f}",
                         "/".join(sorted(decisions)), "yes" if ok else "NO", round(seconds, 2)])
    table(f"Monologue check (second-voice evidence over the speech it must have; several at >= {o.monologue_catch}): "
          f"{right}/{total} clips right at all 8 placements (stress row not counted)",
          ["clip", "length", "truth", "score", "score range", "decision", "right", "seconds"], rows)


# -- 4. speaker naming --------------------------------------------------------------------------------


def bench_naming(fx: Path, jfk: np.ndarray, sample: np.ndarray, embedder: EcapaEmbedder, threshold: float) -> None:
    """Enrol Diane (11.03-14.49 s) and Sheila (21.78-27.85 s); score the rest of the sample plus JFK (unknown)."""
    voices = Path(tempfile.mkdtemp(prefix="voices-"))
    enroll("Diane", [(fx / "sample.wav", 11.03, 14.49)], voices, embedder)
    enroll("Sheila", [(fx / "sample.wav", 21.78, 27.85)], voices, embedder)
    enroll("JFK", [(fx / "jfk.flac", 0.0, 5.4)], voices, embedder)
    profiles = load_profiles(voices, embedder.model_id)
    asr = Transcriber(AsrOptions(model="base"), RUNTIME)
    ref_sample = rttm_turns(fx / "sample.rttm")

    # conversation: parts of the sample not used for enrolment, with JFK's second half between them
    pieces = [(6.3, 10.55), (14.5, 21.75), (27.9, 30.0)]
    jfk_tail = jfk[int(5.4 * SR) :]
    wav_parts, ref, t = [], [], 0.0
    for i, (a, b) in enumerate(pieces):
        wav_parts.append(sample[int(a * SR) : int(b * SR)])
        ref += [(max(s, a) - a + t, min(e, b) - a + t, who) for s, e, who in ref_sample if e > a and s < b]
        t += b - a + 1.0
        if i == 0:
            wav_parts.append(jfk_tail)
            ref.append((t, t + len(jfk_tail) / SR, "JFK"))
            t += len(jfk_tail) / SR + 1.0
    cases = {
        "conversation (Diane, Sheila, JFK enrolled)": (join(*wav_parts), ref, profiles),
        "conversation, JFK not enrolled (-> Guest 1)": (
            join(*wav_parts), [(a, b, "Guest 1" if w == "JFK" else w) for a, b, w in ref], [p for p in profiles if p.name != "JFK"]),
        "monologue: JFK 2nd half x3 (fast path)": (
            join(jfk_tail, jfk_tail, jfk_tail), [(k * (len(jfk_tail) / SR + 1), k * (len(jfk_tail) / SR + 1) + len(jfk_tail) / SR, "JFK") for k in range(3)],
            profiles),
    }
    cases["conversation, reference turns (naming alone)"] = cases["conversation (Diane, Sheila, JFK enrolled)"]
    rows = []
    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    for name, (wav, ref_turns, profs) in cases.items():
        a = audio("naming", wav)
        if "reference turns" in name:  # the reference turns as clusters: naming errors only
            turns = tuple(Turn(s, e, f"C_{who}") for s, e, who in sorted(ref_turns))
            d = Diarization("naming", turns, "reference", False, len({t.speaker for t in turns}), 0.0)
        else:
            d = diarizer.diarize(a)
        labels = SpeakerNamer(embedder, profs, threshold, "Chaffee").label(a, asr.transcribe(a), d)
        scored = hits = 0
        for w in labels.words:
            mid = (w.start + w.end) / 2
            truth = {who for s, e, who in ref_turns if s <= mid < e}
            if len(truth) == 1:  # overlapped or unreferenced words are not scored
                scored += 1
                hits += w.speaker in truth
        names = ", ".join(f"{c}={n}" for c, n in labels.names.items())
        rows.append([name, d.method, names, f"{hits}/{scored}", f"{100 * hits / max(scored, 1):.1f} %"])
    table(f"Speaker naming (voice threshold {threshold}; word accuracy against the reference speaker)",
          ["case", "diarization", "names", "words right", "accuracy"], rows)


# -- 5. speed on one monologue ------------------------------------------------------------------------


def bench_speed(jfk: np.ndarray, embedder: EcapaEmbedder, copies: int) -> None:
    wav = join(*([jfk] * copies), gap=2.0)
    a = audio("speed", wav)
    rows, seconds = [], {}
    for method in ("hybrid", "auto", "off", "simple", "pyannote"):
        diarizer = Diarizer(DiarizationOptions(method=method), embedder)
        if method == "pyannote":
            diarizer.load_pyannote()  # model build is timed separately; this is per-video work
        d = diarizer.diarize(a)
        seconds[method] = d.seconds
        rows.append([method, d.method, d.speakers, round(d.seconds, 3), round(d.seconds / a.seconds, 4)])
    ratio = seconds["pyannote"] / seconds["hybrid"]
    table(f"Diarization seconds on a {a.seconds:.0f} s monologue (jfk x{copies}; VAD included, models warm): "
          f"fast path {ratio:.0f}x faster than pyannote (target >= 10x)",
          ["method", "ran", "speakers", "seconds", "RTF"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=None, help="folder of jfk.flac, sample.wav and references (default: the packaged ones)")
    parser.add_argument("--copies", type=int, default=6, help="jfk copies in the speed monologue")
    parser.add_argument("--voice-threshold", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    fx = args.fixtures or fixtures_dir()
    jfk, sample = read_audio(fx / "jfk.flac"), read_audio(fx / "sample.wav")
    started = time.perf_counter()
    embedder = EcapaEmbedder(RUNTIME)
    print(f"# Quality benchmark ({embedder.device}, {os.cpu_count()} CPU cores)")
    bench_asr(fx, jfk, sample)
    bench_monologue(jfk, sample, embedder)
    bench_der(fx, sample, embedder)
    bench_naming(fx, jfk, sample, embedder, args.voice_threshold)
    bench_speed(jfk, embedder, args.copies)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
