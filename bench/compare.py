"""Two checkouts side by side on one corpus, in one invocation: this one (models in the model
service) and an earlier one (a git worktree: models loaded in every run), plus the sequential
baseline. Measured from outside, the same way for both (bench/collect_trace.py reads the instance):

- throughput: audio hours per wall hour, from the sensor turned on to the last video stored;
- model loads per video after warm-up (old: its steps' `models_loaded`; new: the service's loads);
- run start to its first step (distribution): the time a run spends before any work;
- peak memory of the whole process tree (PSS summed: the daemon's session with its code server
  and runs, and the Ray head's session with the replicas);
- model-seconds per wall second (the models' computing time over the wall time: the CPU stand-in
  for the accelerator's busy fraction);
- seconds for a video whose URL gives 404 to fail.

    git worktree add --detach /tmp/before e770b08
    .venv/bin/python bench/compare.py --before /tmp/before --videos 6 --scale 0.2 --interview-every 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
import project_side  # noqa: E402

BIN = Path(sys.executable).parent
OUT = BENCH / "out"
BROKEN = "gone-404"


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


PROCESS_KINDS = (  # (what a process is, a piece of its command line), first match wins
    ("model replica", "ray::ServeReplica"), ("run", "execute_run"), ("run", "execute_step"),
    # a code server starts each run in a process of its own through multiprocessing (spawn)
    ("run", "multiprocessing.spawn"), ("run", "multiprocessing.forkserver"), ("helper", "multiprocessing.resource_tracker"),
    ("helper", "watch_orphans.py"), ("helper", "tail -F"),  # Dagster's compute-log tails of each run
    ("code server", "api grpc"), ("daemon", "dagster-daemon"), ("ray head", "ray"), ("postgres", "postgres"),
)


def process_kind(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    kind = next((kind for kind, needle in PROCESS_KINDS if needle in cmd), None)
    return kind or "other: " + " ".join(Path(a).name if "/" in a else a for a in cmd.split())[:60]


class MemorySampler:
    """The PSS of every process in the given sessions, summed, once a second; keeps the peak and
    what it was made of (MiB and processes per kind: runs, model replica, Ray head, daemon, …), and
    when it was reached (seconds after the sampling began: the start of the runs or a later phase)."""

    def __init__(self, sessions):
        self.sessions = sessions  # callable -> set of session ids
        self.peak = 0
        self.peak_at_s = 0.0
        self.breakdown: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._began = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self):
        while not self._stop.wait(1.0):
            sids = self.sessions()
            total = 0
            kinds: dict[str, list[int]] = {}
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        if os.getsid(int(entry)) in sids:
                            pss = pss_bytes(int(entry))
                            total += pss
                            k = kinds.setdefault(process_kind(int(entry)), [0, 0])
                            k[0], k[1] = k[0] + pss, k[1] + 1
                    except OSError:
                        continue
            if total > self.peak:
                self.peak, self.peak_at_s = total, round(time.monotonic() - self._began, 1)
                self.breakdown = {k: {"mib": round(v[0] / 2**20), "processes": v[1]}
                                  for k, v in sorted(kinds.items(), key=lambda kv: -kv[1][0])}


def cli_module(checkout: Path) -> str:
    return "chaffee_assets.app.cli" if (checkout / "chaffee_assets" / "app" / "cli.py").exists() else "chaffee_assets.cli"


def workspace(checkout: Path, state: Path) -> Path:
    generated = state / "dagster" / "workspace.yaml"
    return generated if generated.exists() else checkout / "workspace.yaml"


def run(cmd: list[str], env: dict, logf: Path, timeout: float = 1800) -> None:
    with open(logf, "ab") as out:
        subprocess.run(cmd, env=env, cwd=env["_CWD"], stdout=out, stderr=subprocess.STDOUT, check=True, timeout=timeout)


def service_loads(env: dict, state: Path) -> int | None:
    head = state / "ray" / "head.json"
    if not head.exists():
        return None
    code = ("from chaffee_assets.lib.models.client import ModelClient\n"
            f"with ModelClient(address_file={str(head)!r}) as c: print(len(c.call('info').models_loaded))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=env["_CWD"], capture_output=True, text=True, timeout=120)
    return int(out.stdout.split()[-1]) if out.returncode == 0 else None


def wait_for_log(path: Path, needle: str, timeout: float = 180) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{needle!r} not in {path} after {timeout:.0f} s")


def run_side(name: str, checkout: Path, feed: str, ids: list[str], folder: Path, timeout: float,
             overrides: dict[str, str] | None = None) -> dict:
    state = folder / name
    state.mkdir(parents=True)
    env = project_side.project_env(state, feed, len(ids) + 1, overrides or {})
    # the checkout's folder is the working folder of every process: `python -m` puts it first on the path
    env.update(PYTHONPATH=str(checkout), _CWD=str(checkout), SENSOR_INTERVAL_SECONDS="30")
    cli = [sys.executable, "-m", cli_module(checkout)]
    t0 = time.time()
    run([*cli, "up"], env, state / "cli.log")
    log(f"{name}: `chaffee up` in {time.time() - t0:.1f} s")
    loads_before = service_loads(env, state)
    ws = workspace(checkout, state)
    daemon_log = state / "daemon.log"
    sessions = {"ids": set()}

    def current_sessions():
        out = set(sessions["ids"])
        head = state / "ray" / "head.json"
        if head.exists():
            out.add(int(json.loads(head.read_text())["sid"]))
        return out

    try:
        with project_side.started([str(BIN / "dagster-daemon"), "run", "-w", str(ws)], env, daemon_log, cwd=checkout) as daemon:
            sessions["ids"].add(daemon.pid)
            wait_for_log(daemon_log, "SensorDaemon")
            with MemorySampler(current_sessions) as mem:
                run([str(BIN / "dagster"), "sensor", "start", "new_uploads", "-w", str(ws)], env, state / "cli.log")
                launched = time.time()
                log(f"{name}: sensor on; waiting for {len(ids)} videos (and {BROKEN} to fail)")
                collector = subprocess.run(
                    [sys.executable, str(BENCH / "collect_trace.py"), "--wait", ",".join(ids), "--failing", BROKEN,
                     "--timeout", str(timeout)], env=env, cwd=checkout, capture_output=True, text=True, timeout=timeout + 600)
                if collector.returncode:
                    raise RuntimeError(f"{name}: {collector.stdout[-500:]} {collector.stderr[-2000:]}")
                trace = json.loads(collector.stdout.strip().splitlines()[-1])
        loads_after = service_loads(env, state)
    finally:
        subprocess.run([*cli, "down"], env=env, cwd=checkout, capture_output=True, timeout=300)
    return summarize(name, trace, launched, ids, mem.peak, loads_before, loads_after) | {"peak_pss_by_kind": mem.breakdown,
                                                                                           "peak_pss_at_s": mem.peak_at_s}


def summarize(name: str, trace: dict, launched: float, ids: list[str], peak: int, loads_before, loads_after) -> dict:
    mats = [e for r in trace["runs"] for e in r["events"] if e["type"] == "ASSET_MATERIALIZATION"]
    stored = {e["partition"]: e["t"] for e in mats if e["asset"] == "db_rows"}
    audio = {e["partition"]: e["metadata"].get("duration_s", 0.0) for e in mats if e["asset"] == "audio"}
    finished = max(stored[i] for i in ids)
    wall = finished - launched
    by_model: dict[str, float] = {}
    old_loads = 0
    for e in mats:
        md = e["metadata"]
        seconds = dict(md["seconds_by_model"]) if isinstance(md.get("seconds_by_model"), dict) else {}  # the earlier checkout's
        seconds |= {k.removeprefix("seconds_"): v for k, v in md.items()
                    if k.startswith("seconds_") and k != "seconds_by_model" and isinstance(v, (int, float))}
        for model, v in seconds.items():
            by_model[model] = by_model.get(model, 0.0) + v
        old_loads += len(md.get("models_loaded") or []) if isinstance(md.get("models_loaded"), list) else 0
    model_seconds = sum(by_model.values())
    first_step = []
    broken_fail = None
    for r in trace["runs"]:
        starts = [e["t"] for e in r["events"] if e["type"] in ("PIPELINE_START", "RUN_START")]
        steps = [e["t"] for e in r["events"] if e["type"] == "STEP_START"]
        if starts and steps:
            first_step.append(min(steps) - min(starts))
        if r["partition"] == BROKEN and r["status"] == "FAILURE" and starts:
            ends = [e["t"] for e in r["events"] if e["type"] in ("PIPELINE_FAILURE", "RUN_FAILURE")]
            broken_fail = (max(ends) - min(starts)) if ends else None
    service = loads_after - loads_before if loads_after is not None and loads_before is not None else None
    audio_seconds = sum(audio.get(i, 0.0) for i in ids)
    return {
        "side": name, "videos": len(ids), "audio_minutes": round(audio_seconds / 60, 1), "wall_seconds": round(wall, 1),
        "audio_h_per_h": round(audio_seconds / wall, 2),
        "model_loads_per_video": round((service if service is not None else old_loads) / len(ids), 2),
        "run_start_to_first_step_s": _dist(first_step),
        "peak_pss_mib": round(peak / 2**20),
        "model_seconds_per_wall_second": round(model_seconds / wall, 2),
        "broken_video_fails_in_s": round(broken_fail, 1) if broken_fail is not None else None,
        "model_seconds_per_video": {m: round(v / len(ids), 1) for m, v in sorted(by_model.items(), key=lambda kv: -kv[1])},
    }


def _dist(xs: list[float]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    return {"min": round(s[0], 1), "median": round(statistics.median(s), 1), "p90": round(s[int(0.9 * (len(s) - 1))], 1),
            "max": round(s[-1], 1)}


def sequential(feed: str, folder: Path, ids: list[str]) -> dict:
    import throughput

    report = throughput.run_sequential(feed, folder / "sequential", {})
    audio = sum(v["audio_seconds"] for v in report["videos"])
    wall = report["finished_at"] - report["process_started_at"]
    return {"side": "sequential", "videos": len(report["videos"]), "audio_minutes": round(audio / 60, 1),
            "wall_seconds": round(wall, 1), "audio_h_per_h": round(audio / wall, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    corpus_mod.add_corpus_arguments(p)
    p.add_argument("--before", type=Path, required=True, help="the earlier checkout (a git worktree)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--sequential", action="store_true", help="also the sequential baseline")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                   help="also this checkout with these settings, as a side of its own (after[NAME])")
    args = p.parse_args()
    import throughput

    variants = throughput.parse_variants(args.variant, "after")
    corpus = corpus_mod.build_corpus(corpus_mod.spec_from_args(args), args.corpus_dir, log=log)
    broken = corpus_mod.DemoItem(video_id=BROKEN, filename="no-such-talk.flac", title="A talk that is gone",
                                 upload_date=corpus.items[-1].upload_date, duration_s=600.0, size_bytes=1000)
    ids = [i.video_id for i in corpus.items]
    folder = OUT / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    feed, stop = corpus_mod.serve_corpus(corpus)
    rows = []
    try:
        from chaffee_assets.testing.demo_channel import FEED_NAME, write_feed

        write_feed([*corpus.items, broken], feed.rsplit("/", 1)[0], corpus.folder / FEED_NAME, title="Benchmark channel")
        sides = [("before", args.before.resolve(), {}), ("after", REPO, {}), *((n, REPO, env) for n, env in variants.items())]
        for n in range(args.repeats):
            for name, checkout, overrides in (sides if n % 2 == 0 else sides[::-1]):
                rows.append(run_side(f"{name}-{n + 1}", checkout, feed, ids, folder, args.timeout, overrides))
                log(json.dumps(rows[-1]))
        if args.sequential:
            write_feed(corpus.items, feed.rsplit("/", 1)[0], corpus.folder / FEED_NAME, title="Benchmark channel")
            rows.append(sequential(feed, folder, ids))
            log(json.dumps(rows[-1]))
    finally:
        stop()
    (folder / "results.json").write_text(json.dumps(rows, indent=1))
    print_table(rows)
    return 0


def print_table(rows: list[dict]) -> None:
    cols = ["side", "videos", "audio_minutes", "wall_seconds", "audio_h_per_h", "model_loads_per_video",
            "peak_pss_mib", "model_seconds_per_wall_second", "broken_video_fails_in_s"]
    print("\n| " + " | ".join(cols + ["run start to first step (min/median/p90/max s)"]) + " |")
    print("|" + "---|" * (len(cols) + 1))
    for r in rows:
        d = r.get("run_start_to_first_step_s") or {}
        dist = "/".join(str(d.get(k, "")) for k in ("min", "median", "p90", "max")) if d else ""
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + f" | {dist} |")
    for r in rows:
        if r.get("peak_pss_by_kind"):
            print(f"peak memory of {r['side']}: " + ", ".join(
                f"{k} {v['mib']} MiB ({v['processes']})" for k, v in r["peak_pss_by_kind"].items())
                + (f"; reached {r['peak_pss_at_s']} s after the sensor was turned on" if "peak_pss_at_s" in r else ""))
    for r in rows:
        if r.get("model_seconds_per_video"):
            print(f"model seconds per video of {r['side']}: " + ", ".join(f"{m} {v}" for m, v in r["model_seconds_per_video"].items()))
    by = {r["side"].rsplit("-", 1)[0]: r for r in rows}
    b = by.get("before")
    for side, a in by.items():
        if b is not None and side.startswith("after"):
            print(f"throughput {side}/before: {a['audio_h_per_h'] / b['audio_h_per_h']:.2f}x; "
                  f"peak memory {side}/before: {a['peak_pss_mib'] / max(1, b['peak_pss_mib']):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
