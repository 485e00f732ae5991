"""Ingesting from the command line (`chaffee ingest`, `chaffee reembed`, `chaffee demo`) through
the same machinery as the sensor and the UI's backfills: each video's run is submitted to the
instance's queue and launched by the daemon (started for the duration when none is running), so a
CLI ingest has several videos in flight, run monitoring (a dead run's `gpu` slot is freed) and run
retries, and the UI shows the same history. This process only submits and follows the runs:
Ctrl-C or SIGTERM cancels them, and returns within seconds with their slots free."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg

from chaffee_assets.archive import db, sources
from chaffee_assets.defs.metadata import step_seconds
from chaffee_assets.defs.partitions import videos
from chaffee_assets.instance import dagster_internals as internals
from chaffee_assets.instance.setup import archive_url, dagster_instance, running_daemon, write_workspace
from chaffee_assets.lib.errors import DatabaseError, RunFailed, is_database_outage
from chaffee_assets.lib.ids import id_for_file, id_for_url, youtube_id
from chaffee_assets.lib.types import Source
from chaffee_assets.settings import Settings

log = logging.getLogger(__name__)

_FEED_SUFFIXES = (".rss", ".xml", ".atom")
_CHANNEL_MARKERS = ("/@", "/channel/", "/c/", "/user/", "/playlist", "list=")
ALL_ASSETS = ["audio", "transcript", "diarization", "speaker_labels", "segments", "embeddings", "db_rows"]
DATABASE_PATIENCE_S = 900.0  # an outage longer than this ends the ingest with an error
CANCEL_GRACE_S = 15.0  # a cancelled run that has not stopped by then is marked cancelled, its slots freed
RETRY_DECISION_S = 15.0  # a failed run without Dagster's retry decision yet is final after this
RETRY_NUDGE_S = 30.0  # a promised retry not made (or made, not submitted) by then is made here, by Dagster's own code
RETRY_CREATION_S = 300.0  # a run Dagster will retry whose retry has not appeared by then is final


@dataclass
class VideoOutcome:
    video_id: str
    ok: bool
    seconds: float
    error: str | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    attempts: int = 1


def is_feed(source: str) -> bool:
    """A channel, playlist or RSS/Atom feed (listed), as opposed to one video or media file."""
    if "://" not in source:
        return Path(source).suffix.lower() in _FEED_SUFFIXES
    if youtube_id(source):
        return False
    path = urlparse(source).path.lower()
    return path.endswith(_FEED_SUFFIXES) or any(m in source for m in _CHANNEL_MARKERS)


def expand(items: Iterable[str], listing_deadline_s: float | None = None) -> list[Source]:
    """Sources for command-line items: files, media URLs, YouTube videos, channels and feeds. What
    the user names here is theirs to name (a local file too, `origin="cli"`); what a feed or a
    channel lists is a listing's (http(s) media only)."""
    from chaffee_assets.lib.media.feed import list_channel

    out: list[Source] = []
    for item in items:
        if is_feed(item):
            url = Path(item).resolve().as_uri() if "://" not in item else item
            out.extend(list_channel(url, listing_deadline_s) if listing_deadline_s else list_channel(url))
        elif "://" not in item or item.startswith("file://"):
            path = Path(urlparse(item).path if item.startswith("file://") else item).expanduser().resolve()
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {item}")
            out.append(Source(id_for_file(path), str(path), path.stem, origin="cli"))
        else:
            out.append(Source(id_for_url(item), item, origin="cli"))
    return out


def register(settings: Settings, instance: dg.DagsterInstance, items: list[Source]) -> tuple[list[Source], list[str]]:
    """Record the videos' sources (`archive.sources.register`: one video, one id) and make them
    `videos` partitions; returns (the sources as stored, the ids that were new partitions)."""
    with db.connect(archive_url(settings)) as conn:
        stored = sources.register(conn, items)
    stored = list({s.video_id: s for s in stored}.values())  # one media named twice: one video
    known = set(instance.get_dynamic_partitions(videos.name))
    new = [s.video_id for s in stored if s.video_id not in known]
    if new:
        instance.add_dynamic_partitions(videos.name, new)
    return stored, new



def _priority(n: int, total: int) -> dict[str, str]:
    """Older videos first (defs/sensors.run_priority: the same order as the sensor's)."""
    from chaffee_assets.defs.sensors import run_priority

    return run_priority(n, total)


def ingest(
    settings: Settings,
    video_ids: list[str],
    progress: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    poll_s: float = 1.0,
) -> list[VideoOutcome]:
    """One queued run per video over the whole chain, followed to its end (retries included); a
    failed video does not stop the others. `stop` set: every run is cancelled."""
    batch = uuid.uuid4().hex[:12]
    requests = [
        ({"dagster/partition": v, internals.LAUNCHED_BY: "chaffee ingest", internals.BATCH: batch, **_priority(n, len(video_ids))},
         ALL_ASSETS)
        for n, v in enumerate(video_ids)
    ]
    return _submit_and_follow(settings, video_ids, requests, progress, stop, poll_s)


def refresh(
    settings: Settings,
    video_ids: list[str],
    assets: list[str],
    progress: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> list[VideoOutcome]:
    """Materialise `assets` again for each video (one run each, followed to its end), e.g.
    `speaker_labels` and what follows after a voice was enrolled."""
    unknown = sorted(set(assets) - set(ALL_ASSETS))
    if unknown:
        raise ValueError(f"unknown assets {unknown}; the assets are {', '.join(ALL_ASSETS)}")
    requests = [({"dagster/partition": v, internals.LAUNCHED_BY: "chaffee refresh"}, list(assets)) for v in video_ids]
    return _submit_and_follow(settings, video_ids, requests, progress, stop, 1.0)


def _submit_and_follow(settings, labels, requests, progress, stop, poll_s) -> list[VideoOutcome]:
    with dagster_instance(settings) as instance, running_daemon(settings, instance) as daemon:
        if daemon.proc is not None:
            progress("dagster-daemon started for this ingest (runs are queued, launched and monitored by it)")
        workspace = write_workspace(settings)
        with _environment(settings.to_environment()), internals.workspace_context(instance, workspace) as ctx:
            run_ids = internals.submit_runs(ctx, instance, requests)
        retry_here = _retry_here(settings, instance, workspace)
        followers = [_Follower(label, run_id, n, len(labels), retry_here=retry_here)
                     for n, (label, run_id) in enumerate(zip(labels, run_ids, strict=True), 1)]
        for f in followers:
            progress(f"[{f.n}/{f.total}] {f.label}: queued")
        return _follow(instance, followers, progress, stop or threading.Event(), poll_s, daemon)


def _retry_here(settings: Settings, instance, workspace: Path) -> Callable[[str], None]:
    """Dagster's own retry of a failed run, from this process (`internals.retry_here`); its code
    server sees the settings, as the submission's did."""
    def retry(run_id: str) -> None:
        with _environment(settings.to_environment()):
            internals.retry_here(instance, workspace, run_id)
    return retry


@contextmanager
def _environment(values: dict[str, str]):
    """`values` in this process's environment while inside (the code server that builds the runs'
    snapshots is started from here and must see the same settings), restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class _Follower:
    """One video's run, followed through its retries."""

    label: str
    run_id: str
    n: int
    total: int
    attempts: int = 1
    shown: str = "QUEUED"
    failed_seen: float = 0.0
    started_at: float = field(default_factory=time.time)
    outcome: VideoOutcome | None = None
    retry_here: Callable[[str], None] | None = None  # Dagster's own run retry, from this process
    parent: str | None = None  # the failed run this one retries
    unsubmitted: float = 0.0  # when this retry was first seen created but not submitted
    nudged: bool = False

    def step(self, instance, progress) -> None:
        run = instance.get_run_by_id(self.run_id)
        if run is None or self.outcome is not None:
            return
        status = run.status.value
        if status == "NOT_STARTED" and self.parent is not None:
            self.unsubmitted = self.unsubmitted or time.monotonic()
            stuck = time.monotonic() - self.unsubmitted
            if stuck >= RETRY_NUDGE_S:
                self._nudge(self.parent, progress, "its retry was created but not submitted")
            if stuck >= RETRY_CREATION_S:
                self._fail(instance, progress, f"its retry {self.run_id} was created but not submitted in "
                           f"{RETRY_CREATION_S:.0f} s: is the dagster-daemon working? see daemon.log")
            return
        if status in ("STARTING", "STARTED") and self.shown == "QUEUED":
            self.shown = status
            progress(f"[{self.n}/{self.total}] {self.label}: running")
        if not run.is_finished:
            return
        seconds = time.time() - self.started_at
        if status == "SUCCESS":
            steps = step_seconds(instance, self.run_id)
            detail = ", ".join(f"{k} {v:.1f}s" for k, v in steps.items())
            progress(f"[{self.n}/{self.total}] {self.label}: done in {seconds:.1f} s ({detail})")
            self.outcome = VideoOutcome(self.label, True, seconds, None, steps, self.run_id, self.attempts)
            return
        retry = _retry_of(instance, run)
        if retry is not None:
            progress(f"[{self.n}/{self.total}] {self.label}: run failed ({failure_cause(instance, self.run_id)}); "
                     f"retried (attempt {self.attempts + 1})")
            self.parent, self.run_id, self.attempts = self.run_id, retry, self.attempts + 1
            self.shown, self.failed_seen, self.unsubmitted, self.nudged = "QUEUED", 0.0, 0.0, False
            return
        will_retry = run.tags.get("dagster/will_retry")
        if status == "FAILURE" and will_retry in (None, "true"):
            self.failed_seen = self.failed_seen or time.monotonic()
        waited = time.monotonic() - self.failed_seen if self.failed_seen else 0.0
        if will_retry == "true" and waited >= RETRY_NUDGE_S:
            self._nudge(self.run_id, progress, f"Dagster's retry of its failed run did not appear in {RETRY_NUDGE_S:.0f} s")
        if will_retry == "true" and waited < RETRY_CREATION_S:
            return  # its retry is about to be created (by the daemon's run-retry thread, or here)
        if will_retry is None and status == "FAILURE" and waited < RETRY_DECISION_S:
            return  # the tag follows the failure by a moment
        error = "cancelled" if status == "CANCELED" else failure_cause(instance, self.run_id)
        if will_retry == "true":
            error += (f" (Dagster was to retry it, but no retry appeared in {RETRY_CREATION_S:.0f} s: "
                      "is the dagster-daemon's run-retry thread working? see daemon.log)")
        self._fail(instance, progress, error)

    def _fail(self, instance, progress, error: str) -> None:
        seconds = time.time() - self.started_at
        progress(f"[{self.n}/{self.total}] {self.label}: FAILED after {seconds:.1f} s: {error}")
        self.outcome = VideoOutcome(self.label, False, seconds, error, step_seconds(instance, self.run_id), self.run_id, self.attempts)

    def _nudge(self, failed_run: str, progress, why: str) -> None:
        """Once per attempt: Dagster's own retry of `failed_run`, made here (the daemon's did not come)."""
        if self.nudged or self.retry_here is None:
            return
        self.nudged = True
        progress(f"[{self.n}/{self.total}] {self.label}: {why}; retrying it from here")
        try:
            self.retry_here(failed_run)
        except Exception as e:
            if is_database_outage(e):
                self.nudged = False  # again once the database is back
                raise
            progress(f"[{self.n}/{self.total}] {self.label}: the retry from here failed ({e}); waiting for the daemon's")


def _retry_of(instance, run) -> str | None:
    from dagster._core.storage.dagster_run import RunsFilter

    child = run.tags.get("dagster/auto_retry_run_id")
    if child:
        return child
    found = instance.get_runs(RunsFilter(tags={"dagster/parent_run_id": run.run_id}), limit=1)
    return found[0].run_id if found else None


def _follow(instance, followers: list[_Follower], progress, stop: threading.Event, poll_s: float, daemon) -> list[VideoOutcome]:
    checked = time.monotonic()
    outage: float | None = None
    while any(f.outcome is None for f in followers):
        try:
            if stop.is_set():
                _cancel(instance, followers, progress)
                break
            for f in followers:
                f.step(instance, progress)
            if time.monotonic() - checked > 10:
                checked = time.monotonic()
                _reap_dead_workers(instance, followers, progress)
                why = daemon.ensure(instance)  # the daemon we relied on may have gone, or hung
                if why:
                    progress(f"dagster-daemon restarted ({why})")
            if outage is not None:
                progress(f"the database is back after {time.monotonic() - outage:.0f} s")
                outage = None
        except Exception as e:
            if not is_database_outage(e):
                raise
            if outage is None:
                outage = time.monotonic()
                progress("the database is unreachable: waiting for it (the runs fail and are retried once it is back)")
            elif time.monotonic() - outage > DATABASE_PATIENCE_S:
                raise DatabaseError(f"the database has been unreachable for {DATABASE_PATIENCE_S:.0f} s", transient=True) from e
        stop.wait(poll_s)
    return [f.outcome or VideoOutcome(f.label, False, time.time() - f.started_at, "cancelled", {}, f.run_id, f.attempts)
            for f in followers]


def _reap_dead_workers(instance, followers: list[_Follower], progress) -> None:
    """Runs whose worker died without anyone reporting it: failed, slots freed, so they are retried."""
    for f in followers:
        if f.outcome is None and f.shown in ("STARTING", "STARTED"):
            run = instance.get_run_by_id(f.run_id)
            if run is None or run.is_finished:  # already failed (by us or run monitoring): its retry is awaited
                continue
            pid = internals.dead_worker_pid(instance, f.run_id)
            if pid is not None:
                progress(f"[{f.n}/{f.total}] {f.label}: its run's process (pid {pid}) is gone; marking the run failed")
                internals.fail_dead_run(instance, f.run_id, pid)


def _cancel(instance, followers: list[_Follower], progress) -> None:
    pending = [f.run_id for f in followers if f.outcome is None]
    progress(f"cancelling {len(pending)} runs")
    internals.cancel_runs(instance, pending)
    deadline = time.monotonic() + CANCEL_GRACE_S
    while time.monotonic() < deadline:
        left = [r for r in pending if not (instance.get_run_by_id(r) or _gone()).is_finished]
        if not left:
            break
        time.sleep(0.5)
    internals.force_cancel(instance, pending)


class _gone:  # noqa: N801 - a stand-in for a run that no longer exists
    is_finished = True


def failure_cause(instance, run_id: str) -> str:
    """The first failed step's error in one line (its last line: the cause, not the traceback's
    caret), else the run's own failure message."""
    for e in instance.all_logs(run_id):
        ev = e.dagster_event
        if ev is not None and ev.event_type_value == "STEP_FAILURE":
            err = ev.step_failure_data.error
            msg = (err.cause.message if err and err.cause else (err.message if err else "")) or ""
            lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip() and set(ln.strip()) != {"^"}]
            return f"{ev.step_key}: {lines[-1] if lines else 'failed'}"
    for e in instance.all_logs(run_id):
        ev = e.dagster_event
        if ev is not None and ev.event_type_value in ("PIPELINE_FAILURE", "RUN_FAILURE") and e.message:
            return e.message.strip().splitlines()[0]
    return "run failed"


def reembed(
    settings: Settings, progress: Callable[[str], None] = print, stop: threading.Event | None = None
) -> list[str]:
    """Materialise `embeddings` and `db_rows` for every video that has passages, as batched runs
    (one per contiguous range of partitions): nothing is downloaded or transcribed."""
    from chaffee_assets.lib.artifacts import ArtifactStore
    from chaffee_assets.lib.types import Passages

    store = ArtifactStore(settings.artifact_url)
    with dagster_instance(settings) as instance:
        keys = instance.get_dynamic_partitions(videos.name)
    ready = {k for k in keys if store.exists("segments", k, Passages)}
    ranges: list[list[str]] = []
    for i, k in enumerate(keys):
        if k in ready:
            if ranges and i and ranges[-1][-1] == keys[i - 1]:
                ranges[-1].append(k)
            else:
                ranges.append([k])
    if not ranges:
        return []
    requests = [({"dagster/asset_partition_range_start": r[0], "dagster/asset_partition_range_end": r[-1],
                  internals.LAUNCHED_BY: "chaffee reembed"}, ["embeddings", "db_rows"]) for r in ranges]
    labels = [f"{len(r)} videos ({r[0]} … {r[-1]})" for r in ranges]
    progress(f"re-embedding with {settings.embedding_model}: " + "; ".join(labels))
    outcomes = _submit_and_follow(settings, labels, requests, progress, stop, 1.0)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RunFailed("re-embedding failed: " + "; ".join(f"{o.video_id}: {o.error}" for o in failed))
    return [k for r in ranges for k in r]
