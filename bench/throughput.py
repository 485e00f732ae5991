"""Throughput benchmark: the project through Dagster vs. the old sequential pipeline, same corpus.

    python bench/throughput.py [--videos 12] [--scale 1.0] [--repeats 1] [--sides both]
                               [--project-env ASR_WORKERS=2 ...] [--gpu-report]

One invocation builds (or reuses) the corpus (bench/corpus.py), serves it on 127.0.0.1, and runs
both sides on it, the order alternating across --repeats:

- sequential: bench/sequential.py in a fresh process, with its own embedded Postgres.
- project: a fresh state folder (CHAFFEE_HOME) stood up like `chaffee up`, the real
  `dagster-daemon`, the `new_uploads` sensor turned on; from then until every video's db_rows is
  materialised (bench/project_side.py).

Prints, per side: hours of audio per wall-clock hour and the ratio; the model-busy fraction (the
union of intervals during which any model computes, over wall time; per model and in total: the
CPU stand-in for GPU utilisation); start-up (process start to model ready) as min/median/p90/max;
model loads per video; the project's orchestration overhead per video. Writes a timeline chart
(PNG) and the raw traces (JSON) to bench/out/. See bench/README.md for definitions and timings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import corpus as corpus_mod  # noqa: E402
import metrics  # noqa: E402
import project_side  # noqa: E402

OUT = BENCH / "out"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


# -- sides ---------------------------------------------------------------------------------------


def run_sequential(feed_url: str, folder: Path, env_overrides: dict[str, str]) -> dict:
    """bench/sequential.py in its own process, against its own embedded Postgres."""
    from chaffee_assets.archive import db
    from chaffee_assets.instance import embedded_pg

    data = folder / "pgdata"
    info = embedded_pg.start(data)
    try:
        db.ensure_database(info.url(), "chaffee_sequential")
        url = info.url("chaffee_sequential")
        db.migrate(url)
        report = folder / "sequential.json"
        env = project_side.project_env(folder, feed_url, 0, env_overrides)
        project_side.warm_model_cache(project_side.settings_for(env))
        cmd = [sys.executable, str(BENCH / "sequential.py"), "--feed", feed_url, "--database-url", url,
               "--out", str(report), "--workdir", str(folder / "downloads")]
        with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
            assert p.stdout is not None
            with open(folder / "sequential.log", "w") as logf:
                for line in p.stdout:
                    logf.write(line)
                    if line.startswith(("[", "sequential:")):
                        log("  " + line.rstrip())
        if p.returncode:
            raise RuntimeError(f"sequential side failed ({p.returncode}); see {folder / 'sequential.log'}")
        return json.loads(report.read_text())
    finally:
        embedded_pg.stop(data)


class GpuSampler:
    """nvidia-smi every second while the project side runs (utilisation %, memory MiB)."""

    def __init__(self) -> None:
        self.exe = shutil.which("nvidia-smi")
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.exe:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                out = subprocess.run([self.exe, "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10).stdout
                util, mem = (float(x) for x in out.splitlines()[0].split(","))
                self.samples.append((time.time(), util, mem))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                continue

    def report(self) -> str:
        if not self.exe:
            return "GPU report: no nvidia-smi on this machine, no GPU present; the model-busy fraction is the CPU stand-in"
        if not self.samples:
            return "GPU report: nvidia-smi gave no samples"
        util = [u for _, u, _ in self.samples]
        d = metrics.distribution(util)
        return (f"GPU report: {len(util)} samples, utilisation mean {sum(util) / len(util):.0f} % "
                f"(median {d['median']:.0f}, p90 {d['p90']:.0f}), memory max {max(m for _, _, m in self.samples):.0f} MiB")


# -- printing ------------------------------------------------------------------------------------


def fmt_dist(d: dict) -> str:
    if not d:
        return "-"
    return f"{d['min']:.1f} / {d['median']:.1f} / {d['p90']:.1f} / {d['max']:.1f} s (n={d['n']})"


def print_table(results: list[dict]) -> None:
    models = sorted({m for r in results for m in r["busy"]})
    rows = [
        ("audio (h)", lambda r: f"{r['audio_hours']:.2f}"),
        ("wall (s)", lambda r: f"{r['wall_seconds']:.0f}"),
        ("audio h per wall h", lambda r: f"{r['audio_hours_per_hour']:.2f}"),
        ("model busy, total", lambda r: f"{r['busy_total']:.2f}"),
        *[(f"  busy: {m}", lambda r, m=m: f"{r['busy'].get(m, 0.0):.3f}") for m in models],
        ("start-up min/med/p90/max", lambda r: fmt_dist(r["startup"])),
        ("model loads per video", lambda r: f"{r['loads_per_video']:.2f} ({r['loads']} loads, {r['load_seconds']:.0f} s)"),
    ]
    width = max(len(n) for n, _ in rows)
    print()
    print(" | ".join([" " * width, *[f"{r['side']} #{r['repeat']}".ljust(36) for r in results]]))
    for name, f in rows:
        print(" | ".join([name.ljust(width), *[f(r).ljust(36) for r in results]]))


def print_overhead(r: dict) -> None:
    rows = r.get("overhead") or []
    if not rows:
        return
    print(f"\n{r['side']} #{r['repeat']}: orchestration overhead per video, seconds (ratio: over its transcription)")
    print("                         on the video's path (wall)                                    | at the gpu slots")
    print("video      min  transcr | overhead ratio  launch  worker res-init in-steps between | overhead ratio "
          "(held idle, hand-off) | pool-wait(full)  run")
    for x in rows:
        print(f"{x['video_id']:9s} {x['minutes']:4.1f} {x['transcribe_s']:8.1f} | {x['total']:8.1f} {(x['ratio'] or 0):5.2f}  "
              f"{x.get('launch', 0):6.1f} {x.get('worker_start', 0):7.1f} {x.get('resource_init', 0):8.1f} "
              f"{x.get('step_framing', 0):8.1f} {x.get('between_steps', 0):7.1f} | {x.get('gpu_overhead', 0):8.1f} "
              f"{(x.get('gpu_ratio') or 0):5.3f} ({x.get('gpu_slot_idle', 0):5.1f}, {x.get('gpu_handoff', 0):5.1f})     | "
              f"{x['pool_wait_full']:15.1f} {x['run_seconds']:5.0f}")
    ten = r["overhead_10min"]
    print(f"nearest to 10 min: {ten['video_id']} ({ten['minutes']:.1f} min, transcription {ten['transcribe_s']:.1f} s): "
          f"on its path {ten['total']:.1f} s = {100 * (ten['ratio'] or 0):.1f} %, at the gpu slots "
          f"{ten.get('gpu_overhead', 0):.1f} s = {100 * (ten.get('gpu_ratio') or 0):.1f} %; medians over videos "
          f"{100 * r['overhead_median_ratio']:.1f} % and {100 * r.get('gpu_overhead_median_ratio', 0):.1f} %")


# -- main ----------------------------------------------------------------------------------------


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep:
            raise SystemExit(f"--project-env wants KEY=VALUE, got {p!r}")
        out[k] = v
    return out


def parse_variants(specs: list[str], prefix: str) -> dict[str, dict[str, str]]:
    """`NAME:KEY=VALUE[,KEY=VALUE]` each -> {"PREFIX[NAME]": {KEY: VALUE, …}}."""
    out = {}
    for v in specs:
        name, _, pairs = v.partition(":")
        out[f"{prefix}[{name}]"] = parse_env([x for x in pairs.split(",") if x])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    corpus_mod.add_corpus_arguments(p)
    p.add_argument("--repeats", type=int, default=1, help="measure each side this many times (order alternates)")
    p.add_argument("--sides", choices=["both", "project", "sequential"], default="both")
    p.add_argument("--first", choices=["sequential", "project"], default="sequential",
                   help="the side measured first in the first repeat (then alternating)")
    p.add_argument("--project-env", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for the project's processes (e.g. ASR_WORKERS=2); repeatable")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                   help="measure the project side once per variant (settings on top of --project-env), "
                        "order rotating across repeats: compares tunings side by side; repeatable")
    p.add_argument("--launch", choices=["sensor", "backfill"], default="sensor",
                   help="how the project side starts: the sensor turned on (one run per video, the whole chain), or "
                        "`chaffee add` + a backfill of every asset launched through dagster-webserver's GraphQL as the "
                        "UI does (one run per video up to segments, embeddings/db_rows batched across videos)")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="give up on the project side after this many seconds")
    p.add_argument("--gpu-report", action="store_true", help="sample nvidia-smi during the project side")
    p.add_argument("--keep-state", action="store_true", help="keep the project's state folders (default: removed)")
    p.add_argument("--label", default="", help="a word for the output file names")
    p.add_argument("--from-traces", type=Path, default=None, metavar="DIR",
                   help="measure nothing: print the tables and redraw the chart from DIR/traces.json")
    args = p.parse_args(argv)
    if args.from_traces:
        return report_from_traces(args.from_traces)

    overrides = parse_env(args.project_env)
    variants = parse_variants(args.variant, "project") or {"project": {}}
    stamp = time.strftime("%Y%m%d-%H%M%S") + (f"-{args.label}" if args.label else "")
    work = OUT / f"throughput-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    corpus = corpus_mod.build_corpus(corpus_mod.spec_from_args(args), args.corpus_dir, log=log)
    ids = [i.video_id for i in corpus.items]
    log(f"corpus: {len(ids)} videos, {corpus.audio_seconds / 60:.1f} min of audio "
        f"({sum(i.speakers == 2 for i in corpus.items)} interviews) in {corpus.folder}")
    feed_url, stop_server = corpus_mod.serve_corpus(corpus)
    results, sides, raw = [], [], []
    sampler = GpuSampler() if args.gpu_report else None
    try:
        for rep in range(args.repeats):
            projects = list(variants)
            projects = projects[rep % len(projects):] + projects[: rep % len(projects)]
            seq_first = (rep % 2 == 0) == (args.first == "sequential")
            order = ["sequential", *projects] if seq_first else [*projects, "sequential"]
            if args.sides == "project":
                order = projects
            elif args.sides == "sequential":
                order = ["sequential"]
            for name in order:
                folder = work / f"{name.replace('[', '-').replace(']', '')}-{rep}"
                log(f"== {name} #{rep} ({folder})")
                if name == "sequential":
                    trace = run_sequential(feed_url, folder, overrides)
                    side = metrics.sequential_side(trace)
                else:
                    env = {**overrides, **variants[name]}
                    trace = project_side.run_project(feed_url, ids, folder, env, args.timeout, log, sampler, args.launch)
                    side = metrics.project_side(trace)
                    side.name = name
                    if not args.keep_state:
                        shutil.rmtree(folder / "artifacts", ignore_errors=True)
                        shutil.rmtree(folder / "pgdata", ignore_errors=True)
                raw.append({"repeat": rep, "variant": name, **trace})
                r = {"repeat": rep, **metrics.summarize(side)}
                results.append(r)
                sides.append(side)
                log(f"== {name} #{rep}: {r['audio_hours_per_hour']:.2f} h of audio per hour, model busy {r['busy_total']:.2f}")
    finally:
        stop_server()
        (work / "traces.json").write_text(json.dumps(raw))

    report(results, sides, work, f"{len(ids)} videos, {corpus.audio_seconds / 60:.0f} min of audio")
    if sampler is not None:
        print("\n" + sampler.report())
    return 0


def report(results: list[dict], sides: list, work: Path, title: str) -> None:
    print_table(results)
    for rep in sorted({r["repeat"] for r in results}):
        pair = {r["side"]: r for r in results if r["repeat"] == rep}
        for name, r in pair.items():
            if name.startswith("project") and "sequential" in pair:
                ratio = r["audio_hours_per_hour"] / pair["sequential"]["audio_hours_per_hour"]
                print(f"\nrepeat {rep}: {name} / sequential = {ratio:.2f}x")
    for r in results:
        if r["side"].startswith("project"):
            print_overhead(r)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    png = work / "timeline.png"
    last = {s.name: s for s in sides}
    metrics.chart(list(last.values()), png, title=title)
    print(f"\ntimeline chart: {png}\nresults: {work / 'results.json'}")


def report_from_traces(work: Path) -> int:
    results, sides = [], []
    for trace in json.loads((work / "traces.json").read_text()):
        side = metrics.sequential_side(trace) if trace["side"] == "sequential" else metrics.project_side(trace)
        if trace["side"] != "sequential" and trace.get("variant"):
            side.name = trace["variant"]
        results.append({"repeat": trace["repeat"], **metrics.summarize(side)})
        sides.append(side)
    videos = max(len(s.videos) for s in sides)
    report(results, sides, work, f"{videos} videos, {max(s.audio_seconds for s in sides) / 60:.0f} min of audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
