"""From raw traces (bench/sequential.py's report, bench/project_side.py's event log) to the numbers
bench/throughput.py prints, and its timeline chart.

Definitions (wall-clock, epoch seconds; see bench/README.md):
- throughput: hours of audio per wall-clock hour, from launch to the last video stored.
- model-busy fraction: the union of the intervals during which any model computes (whisper,
  silero-vad, ECAPA, pyannote, the text embedder), over the wall time; per model likewise.
- start-up: from the worker process's start (or, for a model loaded lazily inside a step, the
  step's start) to the model being ready; one sample per model load.
- orchestration overhead of a video (project): the run's life from dequeue to success, minus the
  assets' own work (their bodies), minus model loads, minus waiting for a `gpu` slot while other
  steps held all of them. What is left is process launch, imports, code-location load, event
  writes, artifact reads/writes, and slots left idle while a waiting step had not noticed them.
"""

from __future__ import annotations

import re
import statistics
import sys
from dataclasses import dataclass, field

GPU_ASSETS = ("transcript", "diarization", "speaker_labels", "embeddings")
STAGES = ("startup", "audio", "transcript", "diarization", "speaker_labels", "segments", "embeddings", "db_rows", "index")
COLOURS = {
    "startup": "#c8c8c8", "audio": "#4c72b0", "transcript": "#dd8452", "diarization": "#55a868",
    "speaker_labels": "#8172b3", "segments": "#937860", "embeddings": "#da8bc3", "db_rows": "#8c8c8c",
    "index": "#ccb974", "pool_wait": "#f2e6c9",
}


Interval = tuple[float, float]


def union(intervals: list[Interval], lo: float | None = None, hi: float | None = None) -> list[Interval]:
    xs = sorted((max(a, lo) if lo is not None else a, min(b, hi) if hi is not None else b) for a, b in intervals)
    out: list[list[float]] = []
    for a, b in xs:
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def measure(intervals: list[Interval]) -> float:
    return sum(b - a for a, b in union(intervals))


def intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out, ua, ub = [], union(a), union(b)
    i = j = 0
    while i < len(ua) and j < len(ub):
        lo, hi = max(ua[i][0], ub[j][0]), min(ua[i][1], ub[j][1])
        if hi > lo:
            out.append((lo, hi))
        if ua[i][1] < ub[j][1]:
            i += 1
        else:
            j += 1
    return out


def distribution(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
    return {"n": len(s), "min": s[0], "median": statistics.median(s), "p90": p90, "max": s[-1]}


@dataclass
class Video:
    video_id: str
    audio_seconds: float
    stages: dict[str, Interval] = field(default_factory=dict)
    bodies: dict[str, Interval] = field(default_factory=dict)
    waits: dict[str, Interval] = field(default_factory=dict)  # pool: step ready -> step start
    transcribe_seconds: float = 0.0
    overhead: dict[str, float] = field(default_factory=dict)


@dataclass
class Side:
    name: str
    t0: float
    t1: float
    videos: list[Video]
    models: list[tuple[str, float, float]]
    loads: list[tuple[str, float, float]]
    startups: list[float]
    settings: dict = field(default_factory=dict)
    batch_rows: list[tuple[str, Interval]] = field(default_factory=list)  # steps of multi-video runs

    @property
    def wall(self) -> float:
        return self.t1 - self.t0

    @property
    def audio_seconds(self) -> float:
        return sum(v.audio_seconds for v in self.videos)


# -- sequential ----------------------------------------------------------------------------------


def sequential_side(report: dict) -> Side:
    t0 = report["process_started_at"]
    videos, models = [], []
    for v in report["videos"]:
        transcribe = sum(b - a for m, a, b in v["models"] if m == "whisper")
        stages = {k: tuple(x) for k, x in v["stages"].items()}
        videos.append(Video(v["video_id"], v["audio_seconds"], stages, dict(stages), {}, transcribe))
        models += [tuple(x) for x in v["models"]]
    loads = [tuple(x) for x in report["loads"]]
    startups = [report["models_ready_at"] - t0]
    return Side("sequential", t0, report["finished_at"], videos, models, loads, startups)


# -- project -------------------------------------------------------------------------------------


def _events(run: dict, kind: str) -> list[dict]:
    return [e for e in run["events"] if e["type"] == kind]


def _first(run: dict, kind: str) -> float | None:
    xs = _events(run, kind)
    return xs[0]["t"] if xs else None


def project_side(trace: dict) -> Side:
    t0, t1 = trace["launched_at"], trace["finished_at"]
    models: list[tuple[str, float, float]] = []
    loads: list[tuple[str, float, float]] = []
    startups: list[float] = []
    by_video: dict[str, Video] = {}
    batch_rows: list[tuple[str, Interval]] = []
    pool_limit = int(trace.get("settings", {}).get("ASR_WORKERS", 1) or 1)
    runs = sorted(trace["runs"], key=lambda r: r["created"])
    gpu_busy: list[tuple[str, Interval]] = []  # (run_id, step interval) of gpu steps
    step_rows: dict[str, list[tuple[str, Interval]]] = {}
    run_loads: dict[str, list[tuple[str, float, float]]] = {}
    run_models: dict[str, list[Interval]] = {}

    batch_runs: list[dict] = []
    made: dict[str, dict[str, list[str]]] = {}  # run -> step -> the assets it materialised, in order
    for run in runs:
        starts = {e["step"]: e["t"] for e in _events(run, "STEP_START")}
        ends = {e["step"]: e["t"] for e in _events(run, "STEP_SUCCESS")}
        steps = [(k, (starts[k], ends[k])) for k in sorted(starts, key=starts.get) if k in ends]
        step_rows[run["run_id"]] = steps
        made[run["run_id"]] = by_step = {}
        for mat in _events(run, "ASSET_MATERIALIZATION"):
            if mat["asset"] not in by_step.setdefault(mat["step"], []):
                by_step[mat["step"]].append(mat["asset"])
        # a `gpu` step: one that makes a gpu asset (`speech` makes three; older layouts one each)
        gpu_busy += [(run["run_id"], iv) for k, iv in steps if _is_gpu(k, by_step)]
        run_loads[run["run_id"]] = []
        run_models[run["run_id"]] = []
        for mat in _events(run, "ASSET_MATERIALIZATION"):
            tl = mat["metadata"].get("timeline") or {}
            models += [tuple(x) for x in tl.get("models", [])]
            run_models[run["run_id"]] += [(a, b) for _, a, b in tl.get("models", [])]
            for kind, a, b in tl.get("loads", []):
                loads.append((kind, a, b))
                run_loads[run["run_id"]].append((kind, a, b))
                origin = tl["process_started_at"] if a < starts.get(mat["step"], a) else tl.get("body", [a])[0]
                startups.append(b - origin)

    for run in runs:
        steps = step_rows[run["run_id"]]
        by_step = made[run["run_id"]]
        mats = {m["asset"]: m for m in _events(run, "ASSET_MATERIALIZATION")}
        # the run's video: what it materialised (a sensor's run and a backfill's run of one video alike)
        parts = {m["partition"] for m in _events(run, "ASSET_MATERIALIZATION")}
        vid = next(iter(parts)) if len(parts) == 1 else None
        if vid is None or "audio" not in dict(steps):  # a backfill's batched embeddings/db_rows run
            batch_rows += steps
            batch_runs.append(run)
            continue
        v = by_video.setdefault(vid, Video(vid, 0.0))
        v.stages.update(_stages(run))
        for asset, m in mats.items():
            tl = m["metadata"].get("timeline") or {}
            body = tl.get("body") or tl.get("fetch_decode")
            if body:
                v.bodies[asset] = (body[0], body[1])
        if "audio" in mats:
            v.audio_seconds = float(mats["audio"]["metadata"].get("duration_s", 0.0))
        if "transcript" in mats:
            md = mats["transcript"]["metadata"]
            v.transcribe_seconds = float(md.get("inference_seconds", md.get("processing_seconds", 0.0)))
        starting = _first(run, "PIPELINE_STARTING") or run["start"]
        proc = next((m["metadata"]["timeline"]["process_started_at"] for m in mats.values()
                     if "process_started_at" in (m["metadata"].get("timeline") or {})), None)
        if steps and starting:
            v.stages["startup"] = (starting, steps[0][1][0])
        # pool waits: from the previous step's end to this gpu step's start
        prev_end = steps[0][1][0] if steps else None
        for k, (a, b) in steps:
            if _is_gpu(k, by_step) and prev_end is not None and a > prev_end:
                v.waits[k] = (prev_end, a)
            prev_end = b
        v.overhead = _overhead(run, steps, by_step, v, run_loads[run["run_id"]], gpu_busy, pool_limit, starting, proc)
        if v.overhead:
            v.overhead.update(_slot_overhead(steps, by_step, run_models[run["run_id"]]))
            v.overhead["gpu_overhead"] = v.overhead["gpu_slot_idle"] + v.overhead["gpu_handoff"]
            v.overhead["gpu_steps"] = sum(1 for k, _ in steps if _is_gpu(k, by_step))

    # a batched run's `gpu` step holds a slot for all its videos: each carries its share
    for run in batch_runs:
        by_step = made[run["run_id"]]
        covered = sorted({m["partition"] for m in _events(run, "ASSET_MATERIALIZATION") if m["partition"] in by_video})
        held = _slot_overhead(step_rows[run["run_id"]], by_step, run_models[run["run_id"]])["gpu_slot_idle"]
        for vid in covered:
            o = by_video[vid].overhead
            if o:
                o["gpu_slot_idle"] += held / len(covered)
                o["gpu_overhead"] += held / len(covered)
                o["gpu_steps"] += sum(1 for k, _ in step_rows[run["run_id"]] if _is_gpu(k, by_step)) / len(covered)

    videos = [by_video[k] for k in sorted(by_video)]
    return Side("project", t0, t1, videos, models, loads, startups, trace.get("settings", {}), batch_rows)


def _is_gpu(step: str, by_step: dict[str, list[str]]) -> bool:
    return any(a in GPU_ASSETS for a in by_step.get(step, [step]))


def _stages(run: dict) -> dict[str, Interval]:
    """Each stage's stretch of the run (`lib.stages`: the `speech` step split into its assets)."""
    from chaffee_assets.lib.stages import stage_pieces

    out: dict[str, Interval] = {}
    for stage, start, end in stage_pieces((e["t"], e["type"], e["step"], e.get("asset")) for e in run["events"] if e["step"]):
        out[stage] = (out[stage][0], end) if stage in out else (start, end)
    return out


def _pickup(wait: Interval, others: list[Interval], limit: int) -> float:
    """Seconds from the moment a `gpu` slot was free for this step (its ready time, or the last
    moment before it started at which the other steps stopped filling the pool) to its start: the
    hand-off the claim poll and step start-up cost. The rest of the wait is queueing."""
    ready, start = wait

    def occupancy(t: float) -> int:
        return sum(1 for s, e in others if s <= t < e)

    free_at = [c for c in [ready, *(e for _, e in others if ready < e <= start)] if occupancy(c) < limit]
    return start - max(free_at) if free_at else 0.0


def _overhead(run, steps, by_step, v: Video, loads, gpu_busy, limit: int, starting: float | None, proc: float | None) -> dict:
    end = _first(run, "PIPELINE_SUCCESS") or run["end"]
    if not steps or starting is None or end is None:
        return {}
    work = list(v.bodies.values())
    run_loads = [(a, b) for _, a, b in loads]
    others = [iv for rid, iv in gpu_busy if rid != run["run_id"]]
    pickups = {k: _pickup(w, others, limit) for k, w in v.waits.items()}
    queued = [(w[0], w[1] - pickups[k]) for k, w in v.waits.items() if w[1] - pickups[k] > w[0]]
    total = (end - starting) - measure(union(work + run_loads + queued))
    out = {"total": total, "pool_wait_full": measure(queued), "run_seconds": end - starting}
    start = _first(run, "PIPELINE_START")
    if proc and start:
        out["launch"] = max(0.0, proc - starting)  # the code server spawning the run worker
        out["worker_start"] = max(0.0, start - proc)  # python, dagster, the code location, the instance
    init0, init1 = _first(run, "RESOURCE_INIT_STARTED"), _first(run, "RESOURCE_INIT_SUCCESS")
    if init0 and init1:  # resources, less the model loads among them
        out["resource_init"] = (init1 - init0) - measure(intersect(run_loads, [(init0, init1)]))
    # inside steps: loading inputs, storing outputs, events (a step's time outside its body)
    out["step_framing"] = sum(
        (b - a) - measure(intersect(union([v.bodies[x] for x in by_step.get(k, [k]) if x in v.bodies]), [(a, b)]))
        for k, (a, b) in steps if any(x in v.bodies for x in by_step.get(k, [k]))
    )
    # between steps, not queueing for a full pool: hand-offs, a freed slot not yet noticed
    gaps = [(steps[i][1][1], steps[i + 1][1][0]) for i in range(len(steps) - 1)]
    out["between_steps"] = measure(gaps) - measure(intersect(gaps, queued))
    out["gpu_handoff"] = sum(pickups.values())
    return out


def _slot_overhead(steps, by_step, models: list[Interval]) -> dict:
    """Time this video's steps held a `gpu` slot with no model computing (loading inputs, storing
    outputs, events, a lazy model load)."""
    held = sum((b - a) - measure(intersect(models, [(a, b)])) for k, (a, b) in steps if _is_gpu(k, by_step))
    return {"gpu_slot_idle": held}


# -- summary -------------------------------------------------------------------------------------


def model_family(model: str) -> str:
    return {"all-MiniLM-L6-v2": "minilm", "all-mpnet-base-v2": "mpnet"}.get(model, model)


def summarize(side: Side) -> dict:
    wall = side.wall
    per_model: dict[str, list[Interval]] = {}
    for m, a, b in side.models:
        per_model.setdefault(model_family(m), []).append((a, b))
    busy = {m: measure(union(iv, side.t0, side.t1)) / wall for m, iv in sorted(per_model.items())}
    all_iv = [iv for ivs in per_model.values() for iv in ivs]
    out = {
        "side": side.name,
        "videos": len(side.videos),
        "audio_hours": side.audio_seconds / 3600,
        "wall_seconds": wall,
        "audio_hours_per_hour": side.audio_seconds / wall,
        "busy": busy,
        "busy_total": measure(union(all_iv, side.t0, side.t1)) / wall,
        "inference_seconds": {m: sum(b - a for a, b in iv) for m, iv in sorted(per_model.items())},
        "startup": distribution(side.startups),
        "loads": len(side.loads),
        "loads_per_video": len(side.loads) / max(1, len(side.videos)),
        "load_seconds": sum(b - a for _, a, b in side.loads),
    }
    if side.name.startswith("project"):
        rows = []
        for v in side.videos:
            if v.overhead:
                t = v.transcribe_seconds
                rows.append({"video_id": v.video_id, "minutes": v.audio_seconds / 60, "transcribe_s": t,
                             **{k: round(x, 3) for k, x in v.overhead.items()},
                             "ratio": v.overhead["total"] / t if t else None,
                             "gpu_ratio": v.overhead.get("gpu_overhead", 0.0) / t if t else None})
        out["overhead"] = rows
        if rows:
            ten = min(rows, key=lambda r: abs(r["minutes"] - 10))
            out["overhead_10min"] = ten
            out["overhead_median_ratio"] = statistics.median(r["ratio"] for r in rows if r["ratio"] is not None)
            out["gpu_overhead_median_ratio"] = statistics.median(r["gpu_ratio"] for r in rows if r["gpu_ratio"] is not None)
    return out


def chart(sides: list[Side], path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    heights = [max(3.0, 0.38 * (len(s.videos) + 2 + bool(s.batch_rows))) for s in sides]
    fig, axes = plt.subplots(len(sides), 1, figsize=(14, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    xmax = max(s.wall for s in sides)
    for ax, s in zip(axes[:, 0], sides, strict=True):
        labels = []
        rows = [(v.video_id, v) for v in s.videos]
        for y, (name, v) in enumerate(rows):
            for a, b in v.waits.values():
                ax.broken_barh([(a - s.t0, b - a)], (y - 0.3, 0.6), color=COLOURS["pool_wait"])
            for k, (a, b) in v.stages.items():
                ax.broken_barh([(a - s.t0, b - a)], (y - 0.3, 0.6), color=COLOURS.get(k, "#999999"))
            labels.append(f"{name} ({v.audio_seconds / 60:.1f} min)")
        y = len(rows)
        if s.batch_rows:
            for k, (a, b) in s.batch_rows:
                ax.broken_barh([(a - s.t0, b - a)], (y - 0.3, 0.6), color=COLOURS.get(k, "#999999"))
            labels.append("batched run")
            y += 1
        busy = union([(a, b) for _, a, b in s.models], s.t0, s.t1)
        ax.broken_barh([(a - s.t0, b - a) for a, b in busy], (y - 0.3, 0.6), color="black")
        labels.append("any model busy")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, xmax * 1.01)
        summ = summarize(s)
        ax.set_title(f"{s.name}: {s.audio_seconds / 60:.0f} min of audio in {s.wall:.0f} s "
                     f"({summ['audio_hours_per_hour']:.2f} h/h), model busy {summ['busy_total']:.0%}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("seconds since launch")
    handles = [Patch(color=COLOURS[k], label=k) for k in (*STAGES, "pool_wait")] + [Patch(color="black", label="model busy")]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def normalise(text: str) -> str:
    """Text as WER compares it: lower case, words and apostrophes only."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in header]] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n### {title}\n")
    for i, r in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    sys.stdout.flush()
