"""Speech quality on real recordings that are not the project's fixtures (not a test; prints tables).

    .venv/bin/python bench/speech_quality.py --fetch [--github-mirror DIR]   # once: the recordings
    .venv/bin/python bench/speech_quality.py [--sections check,der,vad,asr] [--pyannote]

Recordings (fetched into bench/out/speech/, never committed; sources and licences):
- 14 meeting excerpts of the AMI corpus (CC BY 4.0) with reference turns: `tests/data/*.wav` +
  `debug.*.rttm` of the pyannote.audio 3.1.1 sdist on PyPI (MIT). 30 s scored of each.
- One-voice recordings: silero-vad's `tests/data/test.wav` (a lecture, 60 s; silero-vad 6.2.3
  sdist, MIT), LJSpeech `LJ050-0131.wav` (public domain) and two speakers' sentences
  `spk1_snt*.wav`, `spk2_snt*.wav` from speechbrain's `tests/samples` (Apache-2.0), the fixtures'
  JFK and the sample's two women alone.
- A news report of several voices: silero-vad's `examples/c++/aepyx.wav` (169 s).
- A language switch: faster-whisper's `tests/data/multilingual.mp3` (MIT): the MIT licence read in
  English, then in German, by a second voice (`REFERENCE_EN`, `REFERENCE_DE` below, checked by ear
  against the audio).
- Spliced interviews with known turns: a host talking 5-30 minutes (the lecture or JFK repeated)
  with a guest at 3 % and 5 % of the speech, or a returning guest, same-gender pairs (the sample's
  Diane/Sheila), a voice over another one in one channel.

Sections: `check` (the monologue check's decisions, its score and margin distributions and its
cost per audio hour), `der` (DER at collar 0 and 0.25 s on the meeting excerpts and the spliced
interviews of simple, pyannote, and the check followed by either, clustering thresholds swept;
seconds), `vad` (speech recall of silero at several thresholds against the reference turns),
`naming` (enrolled voices named on an interview of three real speakers; the host rule), `asr` (WER
per half of the language switch with tiny.en and base; what the decoding guard dropped). Runs against an older checkout too (the check's old API),
for a before/after table: `PYTHONPATH=/tmp/before .venv/bin/python bench/speech_quality.py`.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
if not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(REPO))

from metrics import table  # noqa: E402

from chaffee_assets.lib.types import SAMPLE_RATE  # noqa: E402

SR = SAMPLE_RATE
OUT = REPO / "bench" / "out" / "speech"
PYPI = {  # sdist -> members wanted (path inside the archive -> file name here)
    ("pyannote-audio", "pyannote.audio-3.1.1.tar.gz"): ("pyannote.audio-3.1.1/tests/data/", ""),
    ("silero-vad", "silero_vad-6.2.3.tar.gz"): ("silero_vad-6.2.3/", "silero_"),
}
GITHUB = {  # repo -> paths
    "speechbrain/speechbrain": [f"tests/samples/ASR/spk{s}_snt{i}.wav" for s in (1, 2) for i in range(1, 7)]
    + ["tests/samples/TTS/LJ050-0131.wav"],
    "SYSTRAN/faster-whisper": ["tests/data/multilingual.mp3"],
}
REFERENCE_EN = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated "
    "documentation files, to deal in the software without restriction, including without limitation the rights to "
    "use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the software, and to permit "
    "persons to whom the software is furnished to do so, subject to the following conditions: the above copyright "
    "notice and this permission notice shall be included in all copies or substantial portions of the software."
)
REFERENCE_DE = (
    "Jedem, der eine Kopie dieser Software und der zugehörigen Dokumentationsdateien erhält, wird hiermit "
    "unentgeltlich die Genehmigung erteilt, mit der Software uneingeschränkt zu verfahren. Dies umfasst insbesondere "
    "das Recht, die Software zu verwenden, zu vervielfältigen, zu modifizieren, zusammenzufügen, zu veröffentlichen, "
    "zu verteilen, unterzulizenzieren und oder Kopien der Software zu verkaufen und diese Rechte unter den folgenden "
    "Bedingungen anderen zu übertragen."
)
SWITCH_AT = 29.0  # seconds: where the German reading starts in multilingual.mp3


# -- fetching -------------------------------------------------------------------------------------


def _sdist_url(project: str, filename: str) -> str:
    index = urllib.request.urlopen(f"https://pypi.org/simple/{project}/", timeout=60).read().decode()
    for href in re.findall(r'href="([^"]+)"', index):
        if href.split("#")[0].endswith("/" + filename):
            return href.split("#")[0]
    raise SystemExit(f"{filename} not on PyPI's index of {project}")


def fetch(mirror: Path | None) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for (project, filename), (prefix, rename) in PYPI.items():
        data = urllib.request.urlopen(_sdist_url(project, filename), timeout=300).read()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                if m.isfile() and m.name.startswith(prefix) and m.name.endswith((".wav", ".rttm", ".uem")):
                    (OUT / (rename + Path(m.name).name)).write_bytes(tar.extractfile(m).read())
    for repo, paths in GITHUB.items():
        for p in paths:
            if mirror is not None:
                data = subprocess.run(["git", "-C", str(mirror / repo.replace("/", "+") / "repo"), "show", f"HEAD:{p}"],
                                      check=True, capture_output=True).stdout
            else:
                data = urllib.request.urlopen(f"https://raw.githubusercontent.com/{repo}/HEAD/{p}", timeout=120).read()
            (OUT / Path(p).name).write_bytes(data)
    print(f"{len(list(OUT.iterdir()))} files in {OUT}")


# -- material -------------------------------------------------------------------------------------


def read(name: str) -> np.ndarray:
    from chaffee_assets.lib.voices import read_audio

    return read_audio(OUT / name)


def read_any(path: Path) -> np.ndarray:
    from chaffee_assets.lib.voices import read_audio

    return read_audio(path)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def cat(*parts: np.ndarray, gap: float = 0.8) -> np.ndarray:
    return np.concatenate([x for p in parts for x in (p, silence(gap))])


def meetings() -> dict[str, tuple[np.ndarray, list[tuple[float, float, str]]]]:
    """The AMI excerpts, 30 s each (what their UEM scores), with reference turns."""
    turns: dict[str, list] = {}
    for rttm in sorted(OUT.glob("debug.*.rttm")):
        for line in rttm.read_text().splitlines():
            f = line.split()
            turns.setdefault(f[1], []).append((float(f[3]), min(30.0, float(f[3]) + float(f[4])), f[7]))
    return {k: (read(f"{k}.wav")[: 30 * SR], v) for k, v in sorted(turns.items())}


def voices() -> dict[str, np.ndarray]:
    from chaffee_assets.lib.voices import read_audio
    from chaffee_assets.testing import fixtures_dir

    fx = fixtures_dir()
    sample = read_audio(fx / "sample.wav")

    def cut(a: float, b: float) -> np.ndarray:
        return sample[int(a * SR) : int(b * SR)]

    return {
        "lecture": read("silero_test.wav"),
        "jfk": read_audio(fx / "jfk.flac"),
        "lj": read("LJ050-0131.wav"),
        "spk1": cat(*(read(f"spk1_snt{i}.wav") for i in range(1, 7))),
        "spk2": cat(*(read(f"spk2_snt{i}.wav") for i in range(1, 7))),
        "sheila": cat(cut(14.75, 17.90), cut(21.80, 27.80)),
        "diane": cat(cut(11.05, 14.45), cut(18.60, 21.45), cut(28.55, 30.0)),
    }


def guest_at(host: np.ndarray, guest: np.ndarray, share: float, minutes: float, pieces: int = 1) -> np.ndarray:
    """`host` repeated to `minutes`, with `guest` speech making `share` of the whole, in `pieces`."""
    want_host = minutes * 60 * (1 - share)
    copies = max(1, int(round(want_host / (host.size / SR + 0.8))))
    guest_s = share * (copies * host.size / SR) / (1 - share)
    g = np.resize(guest, int(guest_s * SR))
    parts = [host] * copies
    bits = np.array_split(g, pieces)
    for i, b in enumerate(bits):
        parts.insert(int((i + 1) * len(parts) / (pieces + 1)), b)
    return cat(*parts)


def check_cases() -> list[tuple[str, np.ndarray, str]]:
    v = voices()
    one = [("lecture", v["lecture"]), ("jfk x4", cat(*[v["jfk"]] * 4)), ("LJSpeech", v["lj"]), ("spk1", v["spk1"]),
           ("spk2", v["spk2"]), ("Sheila alone", v["sheila"]), ("Diane alone", v["diane"]),
           ("lecture, 5 min", cat(*[v["lecture"]] * 5)), ("lecture, 30 min", cat(*[v["lecture"]] * 30)),
           ("jfk, 10 min", cat(*[v["jfk"]] * 55)), ("lecture at -20 dB", 0.1 * v["lecture"]),
           ("lecture + 20 dB noise", v["lecture"] + np.random.default_rng(0).normal(0, 0.1 * np.std(v["lecture"]), v["lecture"].size).astype(np.float32))]
    several = [("lecture 5 min + spk2 at 3 %", guest_at(v["lecture"], v["spk2"], 0.03, 5)),
               ("lecture 5 min + LJ at 5 %", guest_at(v["lecture"], v["lj"], 0.05, 5)),
               ("lecture 30 min + jfk 30 s (1.7 %)", guest_at(v["lecture"], v["jfk"], 30 / 1800, 30)),
               ("lecture 10 min + spk1 returning 3x, 3 %", guest_at(v["lecture"], v["spk1"], 0.03, 10, pieces=3)),
               ("jfk 10 min + Sheila at 3 %", guest_at(v["jfk"], v["sheila"], 0.03, 10)),
               ("Sheila + Diane (same gender)", cat(v["sheila"], v["diane"])),
               ("Diane/Sheila/Diane", cat(v["diane"][: 3 * SR], v["sheila"], v["diane"][3 * SR :])),
               ("spk1 + spk2", cat(v["spk1"], v["spk2"])),
               ("lecture with LJ over it", _overlaid(v["lecture"], v["lj"])),
               ("news report (aepyx)", read("silero_aepyx.wav"))]
    # the throughput bench's talks (one of them went to pyannote at 0.2699 with the old check)
    sys.path.insert(0, str(REPO / "bench"))
    from corpus import CorpusSpec, build_corpus

    corpus = build_corpus(CorpusSpec(videos=4, scale=0.3, interview_every=0))
    one += [(f"throughput corpus {i.video_id}", read_any(corpus.folder / i.filename)) for i in corpus.items]
    cases = [(n, w, "one") for n, w in one] + [(n, w, "several") for n, w in several]
    cases += [(f"meeting {k}", w, "several") for k, (w, _) in meetings().items()]
    return cases


def _overlaid(host: np.ndarray, guest: np.ndarray) -> np.ndarray:
    out = host.copy()
    start = 20 * SR
    out[start : start + guest.size] += 0.8 * guest[: out.size - start]
    return out


# -- sections -------------------------------------------------------------------------------------


def decide(diarizer, wav: np.ndarray) -> tuple[str, str, float, float | None]:
    """(decision, score text, seconds, margin) with this checkout's check (old API: the pairwise score)."""
    t0 = time.perf_counter()
    if hasattr(diarizer, "monologue_check"):
        c = diarizer.monologue_check(wav)
        return c.decision, f"{c.score:.2f}", time.perf_counter() - t0, (c.lowest_similarity, c.cluster_similarity)
    score = diarizer.monologue_score(wav)
    several = score is not None and score < diarizer.options.monologue_threshold
    return ("several" if several else "one" if score is not None else "too_little"), "-" if score is None else f"{score:.3f}", \
        time.perf_counter() - t0, None


def bench_check(embedder) -> None:
    from chaffee_assets.lib.models.diarize import Diarizer
    from chaffee_assets.lib.types import DiarizationOptions

    diarizer = Diarizer(DiarizationOptions(method="auto"), embedder)
    decide(diarizer, voices()["jfk"])  # models warm (the segmentation model's load is not the check's cost)
    rows, right, total, audio_s, spent = [], {"one": 0, "several": 0}, {"one": 0, "several": 0}, 0.0, 0.0
    long_audio = long_spent = 0.0
    scores: dict[str, list[float]] = {"one": [], "several": []}
    margins: dict[str, list[float]] = {"one": [], "several": []}
    aparts: dict[str, list[float]] = {"one": [], "several": []}
    for name, wav, truth in check_cases():
        decision, score, seconds, margin = decide(diarizer, wav)
        total[truth] += 1
        ok = (decision == "several") == (truth == "several")
        right[truth] += ok
        audio_s, spent = audio_s + wav.size / SR, spent + seconds
        if truth == "one" and wav.size / SR >= 300:  # long talks: the whole check runs (windows and segmentation)
            long_audio, long_spent = long_audio + wav.size / SR, long_spent + seconds
        if decision != "too_little" and score != "-":
            scores[truth].append(float(score))
        low, apart = margin if margin is not None else (None, None)
        if margin is not None and low is not None:
            margins[truth].append(low)
            if apart is not None:
                aparts[truth].append(apart)
        rows.append([name, f"{wav.size / SR:.0f} s", truth, decision, "yes" if ok else "NO", score,
                     "-" if low is None else f"{low:.2f}", "-" if apart is None else f"{apart:.2f}", round(seconds, 2)])
    table(f"Monologue check: {right['one']}/{total['one']} one-voice and {right['several']}/{total['several']} "
          f"several-voice recordings right; {3600 * long_spent / max(long_audio, 1):.0f} s per audio hour on the one-voice "
          f"talks of 5 minutes or more ({3600 * spent / audio_s:.0f} s over all)",
          ["recording", "length", "truth", "decision", "right", "score", "lowest window similarity",
           "distinct cluster similarity", "seconds"], rows)
    for truth in ("one", "several"):
        if scores[truth]:
            s = np.array(scores[truth])
            m = f"; lowest window similarity min {min(margins[truth]):.2f} median {np.median(margins[truth]):.2f}" if margins[truth] else ""
            a = f"; distinct cluster similarity min {min(aparts[truth]):.2f} max {max(aparts[truth]):.2f}" if aparts[truth] else ""
            print(f"- {truth}: score min {s.min():.2f} median {np.median(s):.2f} max {s.max():.2f}{m}{a}")


def der(ref: list[tuple[float, float, str]], turns, collar: float, end: float) -> float:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    r, h = Annotation(), Annotation()
    for a, b, s in ref:
        r[Segment(a, min(b, end))] = s
    for t in turns:
        if t.start < end:
            h[Segment(t.start, min(t.end, end))] = t.speaker
    return float(DiarizationErrorRate(collar=collar)(r, h, uem=Timeline([Segment(0, end)])))


def interviews() -> dict[str, tuple[np.ndarray, list[tuple[float, float, str]]]]:
    """Interviews spliced from different real speakers, turn by turn, with their reference turns:
    a returning guest, three speakers, the sample's two women (same gender) with sample.rttm."""
    from chaffee_assets.lib.voices import read_audio
    from chaffee_assets.testing import fixtures_dir

    v = voices()
    lecture, jfk, lj = v["lecture"], v["jfk"], read("LJ050-0131.wav")
    spk1 = [read(f"spk1_snt{i}.wav") for i in range(1, 7)]
    spk2 = [read(f"spk2_snt{i}.wav") for i in range(1, 7)]

    def splice(pieces: list[tuple[str, np.ndarray]], gap: float = 0.5) -> tuple[np.ndarray, list]:
        out, ref, t = [], [], 0.0
        for who, w in pieces:
            out += [w, silence(gap)]
            ref.append((t, t + w.size / SR, who))
            t += w.size / SR + gap
        return np.concatenate(out), ref

    host = [lecture[i * 8 * SR : (i + 1) * 8 * SR] for i in range(7)]
    returning = [p for i in range(6) for p in (("host", host[i]), ("guest", spk1[i]))]
    three = [("jfk", jfk[: int(5.4 * SR)]), ("lj", lj[: 4 * SR]), ("spk2", spk2[0]), ("jfk", jfk[int(5.4 * SR) :]),
             ("lj", lj[4 * SR :]), ("spk2", spk2[1]), ("host", host[0]), ("spk2", spk2[2]), ("jfk", jfk[: int(5.4 * SR)])]
    fx = fixtures_dir()
    sample_ref = [(float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in
                  (line.split() for line in (fx / "sample.rttm").read_text().splitlines())]
    return {"host + returning guest (6 turns)": splice(returning), "three speakers, returning": splice(three),
            "sample: two women (same gender)": (read_audio(fx / "sample.wav"), sample_ref)}


def der_sets() -> dict[str, tuple[np.ndarray, list, float]]:
    out = {f"AMI {k}": (w, ref, 30.0) for k, (w, ref) in meetings().items()}
    out.update({k: (w, ref, w.size / SR) for k, (w, ref) in interviews().items()})
    return out


def bench_der(embedder, with_pyannote: bool) -> None:
    """DER per method at its defaults, then the clustering thresholds swept (pyannote in its own
    tuning mode: segmentation and embeddings computed once per file, only the clustering again)."""
    from chaffee_assets.lib.models.diarize import PYANNOTE_PARAMS, Diarizer
    from chaffee_assets.lib.types import Audio, DiarizationOptions, Turn, VideoMeta

    sets = der_sets()
    auto = Diarizer(DiarizationOptions(method="auto"), embedder)
    off = Diarizer(DiarizationOptions(method="off"), embedder)
    checks = {k: decide(auto, w)[0] for k, (w, _, _) in sets.items()}  # this checkout's check (old API too)
    new_api = hasattr(auto, "monologue_check")  # older code gave pyannote no lower bound after the check

    def several(k: str) -> bool:
        return checks[k] == "several"

    results: dict[str, dict[str, tuple[float, float, float, int]]] = {}

    def score(method: str, k: str, turns, seconds: float) -> None:
        w, ref, end = sets[k]
        results.setdefault(method, {})[k] = (der(ref, turns, 0.0, end), der(ref, turns, 0.25, end), seconds,
                                             len({t.speaker for t in turns}))

    for thr in (0.6, 0.7, 0.8):
        simple = Diarizer(DiarizationOptions(method="simple", simple_threshold=thr), embedder)
        hybrid = Diarizer(DiarizationOptions(method="hybrid", simple_threshold=thr), embedder) if new_api else None
        for k, (w, _, _) in sets.items():
            audio = Audio(VideoMeta("d", "d", "file:///b"), w)
            t0 = time.perf_counter()
            d = simple.diarize(audio)
            score(f"simple {thr}", k, d.turns, time.perf_counter() - t0)
            t0 = time.perf_counter()
            if hybrid is not None:  # the product's path: the check, then simple told at least two speakers
                d = hybrid.diarize(audio)
            elif not several(k):  # older code: its check, then simple
                d = off.diarize(audio)
            score(f"check + simple {thr}", k, d.turns, time.perf_counter() - t0)
    if with_pyannote:
        import torch

        pipeline = auto.load_pyannote()
        pipeline.training = True  # pyannote's tuning mode: caches in each file dict
        files = {k: {"waveform": torch.from_numpy(w).unsqueeze(0), "sample_rate": SR} for k, (w, _, _) in sets.items()}
        base = PYANNOTE_PARAMS["clustering"]["threshold"]
        for thr in sorted({0.6, 0.7, 0.8, 0.9, 1.0, base}):
            pipeline.instantiate({**PYANNOTE_PARAMS, "clustering": {**PYANNOTE_PARAMS["clustering"], "threshold": thr}})
            for k in sets:
                for name, bounds in ((f"pyannote {thr}", {}), (f"check + pyannote {thr}", {"min_speakers": 2} if new_api else {})):
                    if name.startswith("check") and not several(k):
                        w = sets[k][0]
                        t0 = time.perf_counter()
                        turns = off.diarize(Audio(VideoMeta("d", "d", "file:///b"), w)).turns
                        score(name, k, turns, time.perf_counter() - t0)
                        continue
                    t0 = time.perf_counter()
                    out = pipeline(files[k], **bounds)
                    ann = getattr(out, "speaker_diarization", out)
                    turns = [Turn(float(s.start), float(s.end), str(lab)) for s, _, lab in ann.itertracks(yield_label=True)]
                    score(name, k, turns, time.perf_counter() - t0)
        pipeline.training = False
        pipeline.instantiate(PYANNOTE_PARAMS)

    def mean(method: str, group: str, i: int) -> float:
        vals = [r[i] for k, r in results[method].items() if k.startswith("AMI") == (group == "AMI")]
        return float(np.mean(vals))

    rows = []
    for method in results:
        seconds = sum(r[2] for r in results[method].values())
        rows.append([method, f"{100 * mean(method, 'AMI', 0):.1f} / {100 * mean(method, 'AMI', 1):.1f}",
                     f"{100 * mean(method, 'spliced', 0):.1f} / {100 * mean(method, 'spliced', 1):.1f}",
                     f"{seconds:.0f}"])
    table("Diarization: mean DER % (collar 0 / 0.25 s) on 14 AMI meeting excerpts (30 s) and 3 interviews with known "
          "turns; seconds for all 17 (pyannote: the first threshold computed segmentation and embeddings, the others reuse them)",
          ["method (threshold)", "AMI excerpts", "spliced interviews", "seconds"], rows)
    per = [[k, len({s for _, _, s in sets[k][1]}), checks[k]]
           + [f"{100 * results[m][k][1]:.1f} ({results[m][k][3]})" for m in results] for k in sets]
    table("Per recording: DER % at collar 0.25 s (speakers found)", ["recording", "speakers", "check"] + list(results), per)


def bench_naming(embedder, threshold: float = 0.5) -> None:
    """Enrolled voices named on an interview of three real speakers (the lecturer and a guest
    enrolled from other parts of their recordings, a second guest not enrolled), and the host rule."""
    import tempfile

    from chaffee_assets.lib.models.asr import Transcriber
    from chaffee_assets.lib.models.diarize import Diarizer
    from chaffee_assets.lib.models.runtime import ModelRuntime
    from chaffee_assets.lib.speakers import SpeakerNamer
    from chaffee_assets.lib.types import AsrOptions, Audio, Diarization, DiarizationOptions, Turn, VideoMeta
    from chaffee_assets.lib.voices import enroll, load_profiles
    from chaffee_assets.settings import Settings

    folder = Path(tempfile.mkdtemp(prefix="voices-"))
    enroll("Lecturer", [(OUT / "silero_test.wav", 48.0, 60.0)], folder, embedder)
    enroll("Guest A", [(OUT / "spk1_snt1.wav", None, None), (OUT / "spk1_snt2.wav", None, None)], folder, embedder)
    profiles = load_profiles(folder, embedder.model_id)
    lecture, lj = read("silero_test.wav"), read("LJ050-0131.wav")
    spk1 = [read(f"spk1_snt{i}.wav") for i in range(3, 7)]
    host = [lecture[i * 8 * SR : (i + 1) * 8 * SR] for i in range(6)]
    pieces = [("Lecturer", host[0]), ("Guest A", spk1[0]), ("Lecturer", host[1]), ("Guest 1", lj[: 4 * SR]),
              ("Lecturer", host[2]), ("Guest A", spk1[1]), ("Lecturer", host[3]), ("Guest A", spk1[2]),
              ("Lecturer", host[4]), ("Guest 1", lj[4 * SR :]), ("Lecturer", host[5]), ("Guest A", spk1[3])]
    parts, ref, t = [], [], 0.0
    for who, w in pieces:
        parts += [w, silence(0.5)]
        ref.append((t, t + w.size / SR, who))
        t += w.size / SR + 0.5
    interview = np.concatenate(parts)
    monologue = cat(*host)
    mono_ref = [(0.0, monologue.size / SR, "Lecturer")]
    asr = Transcriber(AsrOptions(model="tiny.en"), ModelRuntime.resolve("auto", Settings().model_cache_dir))
    diarizers = {"hybrid": Diarizer(DiarizationOptions(method="hybrid"), embedder),
                 "auto": Diarizer(DiarizationOptions(method="auto"), embedder)}
    cases = [("interview, DIARIZATION=hybrid (default)", interview, ref, profiles, "hybrid"),
             ("interview, DIARIZATION=auto", interview, ref, profiles, "auto"),
             ("interview, reference turns (naming alone)", interview, ref, profiles, "reference"),
             ("monologue, lecturer enrolled", monologue, mono_ref, profiles, "hybrid"),
             ("monologue, only the guest enrolled (-> host)", monologue, [(0.0, monologue.size / SR, "Chaffee")],
              [p for p in profiles if p.name != "Lecturer"], "hybrid")]
    rows = []
    for name, wav, truth, profs, how in cases:
        audio = Audio(VideoMeta("naming", "naming", "file:///bench"), wav)
        if how == "reference":
            turns = tuple(Turn(a, b, f"C_{who}") for a, b, who in truth)
            d = Diarization("naming", turns, "reference", False, len({x.speaker for x in turns}), 0.0)
        else:
            d = diarizers[how].diarize(audio)
        labels = SpeakerNamer(embedder, profs, threshold, "Chaffee").label(audio, asr.transcribe(audio), d)
        scored = hits = 0
        for w in labels.words:
            mid = (w.start + w.end) / 2
            who = {x for a, b, x in truth if a <= mid < b}
            if len(who) == 1:
                scored, hits = scored + 1, hits + (w.speaker in who)
        rows.append([name, d.method, ", ".join(f"{c}={n}" for c, n in labels.names.items()), f"{hits}/{scored}",
                     f"{100 * hits / max(scored, 1):.1f} %"])
    table(f"Speaker naming on real voices (VOICE_THRESHOLD {threshold}): words given the right name",
          ["case", "diarization", "names", "words right", "accuracy"], rows)


def bench_vad() -> None:
    from chaffee_assets.lib.models import vad

    rows = []
    for threshold in (0.5, 0.35, 0.25):
        hit = ref_n = fa = non = 0
        for wav, ref in meetings().values():
            r, h = np.zeros(3000, bool), np.zeros(3000, bool)
            for a, b, _ in ref:
                r[int(a * 100) : int(b * 100)] = True
            for a, b in vad.speech_regions(wav, threshold=threshold):
                h[int(a * 100) : int(min(b, 30) * 100)] = True
            hit, ref_n, fa, non = hit + (r & h).sum(), ref_n + r.sum(), fa + (h & ~r).sum(), non + (~r).sum()
        rows.append([threshold, f"{hit / ref_n:.3f}", f"{fa / non:.3f}"])
    table("silero VAD on the AMI excerpts: speech recall and false alarms (share of non-speech) per threshold",
          ["threshold", "speech recall", "false alarm"], rows)


def bench_asr() -> None:
    import jiwer

    from chaffee_assets.lib.models.asr import Transcriber
    from chaffee_assets.lib.models.runtime import ModelRuntime
    from chaffee_assets.lib.types import AsrOptions, Audio, VideoMeta
    from chaffee_assets.settings import Settings

    def norm(text: str) -> str:
        return " ".join(re.sub(r"[^\w' ]+", " ", text.lower()).split())

    runtime = ModelRuntime.resolve("auto", Settings().model_cache_dir)
    wav = read("multilingual.mp3")
    rows = []
    try:  # the language check of English-only models (newer checkouts)
        from chaffee_assets.lib.models.asr import LanguageCheck

        check = {"language_id": LanguageCheck("base", runtime)}
    except ImportError:
        check = {}
    for model in ("tiny.en", "base"):
        tr = Transcriber(AsrOptions(model=model), runtime)
        out = tr.transcribe(Audio(VideoMeta("switch", "switch", "file:///bench"), wav), **check)
        en = "".join(w.text for w in out.words if w.start < SWITCH_AT)
        de = "".join(w.text for w in out.words if w.start >= SWITCH_AT)
        info = out.info
        dropped = f"{getattr(info, 'dropped_segments', '-')} ({getattr(info, 'dropped_seconds', 0):.0f} s)"
        rows.append([model, f"{100 * jiwer.wer(norm(REFERENCE_EN), norm(en)):.0f} %", f"{100 * jiwer.wer(norm(REFERENCE_DE), norm(de)):.0f} %",
                     info.language, getattr(info, "multilingual", "-"), dropped, _heard(info), de.strip()[:60]])
    table("ASR on a language switch (MIT licence, English then German): WER per half; segments the guard dropped; "
          "what the language check heard in an English-only model's windows",
          ["model", "WER English", "WER German", "language", "per-window language", "dropped", "language check",
           "German half begins"], rows)


def _heard(info) -> str:
    checked = getattr(info, "language_checked", 0)
    if not checked:
        return "-"
    others = getattr(info, "other_languages", ())
    return f"{len(others)} of {checked} windows: " + (", ".join(f"{lang} at {a:.0f} s" for a, lang, _ in others) or "English")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fetch", action="store_true", help="download the recordings into bench/out/speech and stop")
    parser.add_argument("--github-mirror", type=Path, help="read the GitHub files from local bare clones (<dir>/<owner>+<name>/repo)")
    parser.add_argument("--sections", default="check,der,vad,naming,asr")
    parser.add_argument("--pyannote", action="store_true", help="also pyannote in the DER table (~6 min on a 2-core CPU)")
    args = parser.parse_args()
    if args.fetch:
        return fetch(args.github_mirror)
    if not (OUT / "trn00.wav").exists():
        raise SystemExit(f"no recordings in {OUT}: run with --fetch first")
    import logging

    logging.basicConfig(level=logging.ERROR)
    from chaffee_assets.lib.models.ecapa import EcapaEmbedder
    from chaffee_assets.lib.models.runtime import ModelRuntime
    from chaffee_assets.settings import Settings

    sections = set(args.sections.split(","))
    started = time.perf_counter()
    embedder = EcapaEmbedder(ModelRuntime.resolve("auto", Settings().model_cache_dir))
    import chaffee_assets

    print(f"# Speech quality on real recordings ({embedder.device}, {os.cpu_count()} CPU cores, code {Path(chaffee_assets.__file__).parent})")
    if "check" in sections:
        bench_check(embedder)
    if "vad" in sections:
        bench_vad()
    if "der" in sections:
        bench_der(embedder, args.pyannote)
    if "naming" in sections:
        bench_naming(embedder)
    if "asr" in sections:
        bench_asr()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
