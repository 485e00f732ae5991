"""`chaffee`: stand the project up, ingest videos, enroll voices, search the archive."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from chaffee_assets.instance.setup import dagster_instance
from chaffee_assets.lib.errors import ChaffeeError
from chaffee_assets.lib.signals import default_signals
from chaffee_assets.settings import Settings, get_settings


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.archive.db import redacted
    from chaffee_assets.instance.setup import up

    r = up(settings)
    where = f"embedded Postgres in {settings.pg_data_dir}" if r.embedded else "DATABASE_URL"
    print(f"database   {where} (ready in {r.started_seconds:.2f} s)")
    print(f"archive    {redacted(r.archive_url)}")
    print(f"models     model service on Ray {r.service_address} ({'RAY_ADDRESS' if settings.ray_address else 'local head'}), "
          f"models warm in {r.service_seconds:.1f} s")
    print(f"dagster    DAGSTER_HOME={r.dagster_home} (runs, events, schedules in Postgres)")
    print(f"pools      gpu={settings.asr_workers}  runs in flight={settings.download_workers}")
    if r.migrations_applied:
        print(f"migrations {', '.join(r.migrations_applied)}")
    if r.orphans_cleared:
        print(f"runs       {len(r.orphans_cleared)} left running by a process that no longer exists: marked failed, "
              f"their gpu slots freed ({', '.join(x[:8] for x in r.orphans_cleared)})")
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.instance.setup import down

    stopped = [what for what, done in down(settings).items() if done]
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.archive import db, writer
    from chaffee_assets.instance import embedded_pg
    from chaffee_assets.instance.setup import archive_url

    if settings.database_url:
        print("database   DATABASE_URL (external)")
    else:
        info = embedded_pg.running(settings.pg_data_dir)
        print(f"database   embedded, {f'running (pid {info.pid})' if info else 'stopped: run `chaffee up`'} in {settings.pg_data_dir}")
        if info is None:
            return 1
    print(f"dagster    DAGSTER_HOME={settings.dagster_home}")
    with dagster_instance(settings) as instance:
        limit = instance.event_log_storage.get_concurrency_info("gpu").slot_count
        states = video_states(instance)
    print(f"pools      gpu={limit}  runs in flight={settings.download_workers}")
    print(f"models     whisper={settings.whisper_model} embedding={settings.embedding_model} "
          f"diarization={settings.diarization_method} device={settings.device}")
    _print_service(settings)
    print(f"artifacts  {settings.artifact_url}")
    with db.connect(archive_url(settings)) as conn:
        c = writer.counts(conn)
    print(f"archive    {states['partitions']} video partitions: {states['stored']} stored, {len(states['failed'])} failed, "
          f"{states['partitions'] - states['stored'] - len(states['failed'])} not run yet; {c['segments']} passages")
    for video_id, cause in list(states["failed"].items())[:10]:
        print(f"failed     {video_id}: {cause}")
    for video_id, names in list(states["checks"].items())[:10]:
        print(f"check      {video_id}: failed {', '.join(sorted(names))}")
    if len(states["checks"]) > 10:
        print(f"check      … {len(states['checks']) - 10} more videos with failed checks (the UI's Checks tab)")
    for model, n in sorted(c.get("vectors", {}).items()):
        print(f"vectors    {model}: {n}")
    return 0


def video_states(instance) -> dict:
    """Partitions; stored (db_rows materialised); failed (the latest run of a video not stored failed), with the
    cause; checks (video -> the asset checks whose latest evaluation failed)."""
    import dagster as dg

    from chaffee_assets.app.ingest import failure_cause
    from chaffee_assets.defs.checks import ALL_CHECKS
    from chaffee_assets.defs.checks import failing as failing_checks
    from chaffee_assets.defs.partitions import run_video

    partitions = instance.get_dynamic_partitions("videos")
    stored = set(instance.get_materialized_partitions(dg.AssetKey("db_rows"))) & set(partitions)
    latest: dict[str, object] = {}
    for record in instance.get_run_records():  # newest first
        key = run_video(record.dagster_run.tags)
        if key and key not in latest:
            latest[key] = record.dagster_run
    failed = {k: failure_cause(instance, r.run_id) for k, r in latest.items()
              if k in partitions and k not in stored and r.status.value in ("FAILURE", "CANCELED")}
    checks = {k: v for k, v in failing_checks(instance, ALL_CHECKS).items() if k in partitions}
    return {"partitions": len(partitions), "stored": len(stored), "failed": failed, "checks": checks}


def _print_service(settings: Settings) -> None:
    from chaffee_assets.instance import model_service

    try:
        st = model_service.status(settings)
    except ChaffeeError as e:
        print(f"service    not running: {e}")
        return
    print(f"service    {st.app_status.split('.')[-1]} on Ray {st.address}" + (f": {st.message}" if st.message else ""))
    for name, state in st.deployments.items():
        print(f"deployment {name}: {state.replace('DeploymentStatus.', '').replace('ReplicaState.', '')}")
    for r in st.replicas:
        gpu = f", GPU memory {r.gpu_memory_bytes / 2**20:.0f} MiB" if r.gpu_memory_bytes else ""
        print(f"replica    {r.replica} on {r.device}: {r.requests_served} requests served, {r.in_flight} in flight, "
              f"memory {r.rss_bytes / 2**20:.0f} MiB{gpu}; models {', '.join(r.models_loaded)}")


def _listed(settings: Settings, args: argparse.Namespace, service: bool) -> list:
    """The instance up (the model service too, if `service`), then the videos `args.sources` name
    (feeds and channels listed), at most `--limit`."""
    from chaffee_assets.app.ingest import expand
    from chaffee_assets.instance.setup import up

    up(settings, service=service)
    items = expand(args.sources)
    return items[: args.limit] if args.limit else items


@contextmanager
def _stop_on_signals():
    """An event set by Ctrl-C or SIGTERM: the ingest cancels its runs and returns."""
    import signal
    import threading

    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.app.ingest import ingest, register

    listed = _listed(settings, args, service=True)
    with dagster_instance(settings) as instance:
        items, _ = register(settings, instance, listed)
    print(f"{len(items)} videos: {', '.join(s.video_id for s in items)}")
    with _stop_on_signals() as stop:
        outcomes = ingest(settings, [s.video_id for s in items], stop=stop)
    failed = [o for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)} ingested, {len(failed)} failed" + (" (cancelled)" if stop.is_set() else ""))
    return 130 if stop.is_set() else (1 if failed else 0)


def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    """Register videos as `videos` partitions (and their sources) without running anything: what a
    backfill of a channel's history from the UI starts from."""
    from chaffee_assets.app.ingest import register

    items = _listed(settings, args, service=False)
    with dagster_instance(settings) as instance:
        _, new = register(settings, instance, items)
    print(f"{len(items)} videos listed, {len(new)} new partitions: {', '.join(new) or 'none'}")
    if new:
        print("backfill them from the UI (Assets, select all, Materialize, choose the partitions) or with `chaffee ingest`")
    return 0


def cmd_reembed(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.app.ingest import reembed
    from chaffee_assets.instance.setup import up

    up(settings)
    with _stop_on_signals() as stop:
        done = reembed(settings, stop=stop)
    print(f"re-embedded {len(done)} videos with {settings.embedding_model}")
    return 0


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.app.search import search

    hits = search(args.query, k=args.k, speaker=args.speaker, video=args.video, settings=settings)
    if args.json:
        print(json.dumps([h.__dict__ for h in hits], indent=2))
    else:
        from chaffee_assets.archive.search import format_hits

        print(format_hits(hits) if hits else "no passages found")
    return 0


def cmd_rename(settings: Settings, args: argparse.Namespace) -> int:
    """speaker_labels and what follows, again, for the given videos or every stored one."""
    from chaffee_assets.app.ingest import refresh
    from chaffee_assets.archive import db
    from chaffee_assets.instance.setup import archive_url, up

    up(settings)
    videos = list(args.videos)
    if not videos:
        with db.connect(archive_url(settings)) as conn:
            videos = [r[0] for r in conn.execute("SELECT video_id FROM videos WHERE passages > 0 ORDER BY video_id")]
    if not videos:
        print("no stored videos to re-name")
        return 0
    with _stop_on_signals() as stop:
        outcomes = refresh(settings, videos, ["speaker_labels", "segments", "embeddings", "db_rows"], stop=stop)
    failed = [o for o in outcomes if not o.ok]
    print(f"re-named {len(outcomes) - len(failed)} of {len(outcomes)} videos" + (f"; failed: {', '.join(o.video_id for o in failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_gc(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.app.gc import gc
    from chaffee_assets.instance.setup import up

    up(settings, service=False)  # the database and the instance (no model is needed)
    for line in gc(settings, dry_run=args.dry_run).lines():
        print(line)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.app.serve import serve

    serve(settings, host=args.host, port=args.port)
    return 0


def cmd_enroll(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.instance import model_service
    from chaffee_assets.lib.artifacts import ArtifactStore
    from chaffee_assets.lib.models.client import ServiceClipEmbedder
    from chaffee_assets.lib.voices import enroll

    clips = [(Path(a), args.start, args.end) for a in args.audio]
    with model_service.client(settings) as models:
        embedder = ServiceClipEmbedder(models, ArtifactStore(settings.artifact_url))
        profile = enroll(args.name, clips, settings.voices_dir, embedder)
    print(f"voice {profile.name!r}: {profile.n_clips} clips, model {profile.model_id}, in {settings.voices_dir / profile.name}")
    return 0


def cmd_voices(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.lib.errors import VoiceProfileError
    from chaffee_assets.lib.voices import PROFILE_FILE, read_profile

    root = settings.voices_dir
    files = sorted(root.glob(f"*/{PROFILE_FILE}")) if root.is_dir() else []
    if not files:
        print(f"no voices enrolled in {root}")
    for f in files:
        try:
            p = read_profile(f)
        except VoiceProfileError as e:
            print(f"{f.parent.name:24s} unreadable: {e}")
            continue
        print(f"{p.name:24s} {p.n_clips:3d} clips  model {p.model_id}  sources {len(p.sources)}")
    return 0


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.instance.setup import up

    up(settings)
    env = {**os.environ, "DAGSTER_HOME": str(settings.dagster_home)}
    from chaffee_assets.instance.setup import write_workspace

    # this Python's Dagster (and so this install of the project), however it was installed
    argv = [sys.executable, "-m", "dagster", "dev", "-w", str(write_workspace(settings)), "-h", args.host, "-p", str(args.port)]
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={settings.dagster_home})", flush=True)
    os.execvpe(argv[0], argv, env)
    return 0  # not reached


def cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    """Check the packaged models (assembling the split ones once into MODEL_CACHE) and the configured ones."""
    from chaffee_assets.lib.models import registry

    cache = settings.model_cache_dir
    found = registry.check_packaged_models(cache)
    registry.resolve_whisper(settings.whisper_model, cache)
    registry.resolve_embedding(settings.embedding_model, cache)
    print(f"model cache {cache}")
    for name, path in found.items():
        print(f"  {name:28s} {path}")
    print(f"configured  whisper={settings.whisper_model} embedding={settings.embedding_model}: found")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from chaffee_assets.app.demo import run_demo

    return run_demo(settings, fixtures_dir=Path(args.fixtures) if args.fixtures else None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chaffee", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start or reuse the database, migrate, write the Dagster instance").set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop the embedded Postgres").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="what runs where, and what is stored").set_defaults(fn=cmd_status)

    s = sub.add_parser("ingest", help="ingest videos, files, channels or feeds now (no daemon needed)")
    s.add_argument("sources", nargs="+", help="YouTube URL, media URL, local file, channel URL or RSS feed")
    s.add_argument("--limit", type=int, default=0, help="at most this many videos")
    s.set_defaults(fn=cmd_ingest)

    s = sub.add_parser("add", help="add videos, channels or feeds as partitions without running them (then backfill)")
    s.add_argument("sources", nargs="+", help="YouTube URL, media URL, local file, channel URL or RSS feed")
    s.add_argument("--limit", type=int, default=0, help="at most this many videos")
    s.set_defaults(fn=cmd_add)

    sub.add_parser("reembed", help="re-materialise embeddings and db_rows with EMBEDDING_MODEL").set_defaults(fn=cmd_reembed)

    s = sub.add_parser("search", help="semantic search over the archive")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=5, help="number of passages")
    s.add_argument("--speaker", help="only passages of this speaker")
    s.add_argument("--video", help="only passages of this video id")
    s.add_argument("--json", action="store_true", help="JSON output")
    s.set_defaults(fn=cmd_search)

    s = sub.add_parser("rename", help="after enrolling a voice: speaker_labels and what follows again (no whisper, no pyannote)")
    s.add_argument("videos", nargs="*", help="video ids (default: every stored video)")
    s.set_defaults(fn=cmd_rename)

    s = sub.add_parser("gc", help="remove vectors of models no longer configured (once the configured one covers "
                       "every video) and, with AUDIO_RETENTION=drop, stored audio")
    s.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    s.set_defaults(fn=cmd_gc)

    s = sub.add_parser("serve", help="the search page (and its JSON endpoint) on http://HOST:PORT")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("enroll", help="create or extend the voice profile NAME from audio files")
    s.add_argument("name")
    s.add_argument("audio", nargs="+")
    s.add_argument("--start", type=float, default=None, help="seconds: use audio from here")
    s.add_argument("--end", type=float, default=None, help="seconds: use audio up to here")
    s.set_defaults(fn=cmd_enroll)
    sub.add_parser("voices", help="list enrolled voices").set_defaults(fn=cmd_voices)

    s = sub.add_parser("dev", help="start the Dagster UI and daemon on this project's instance")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=3000)
    s.set_defaults(fn=cmd_dev)

    sub.add_parser("models", help="check the packaged and configured models (assembled once into MODEL_CACHE)").set_defaults(fn=cmd_models)

    s = sub.add_parser("demo", help="ingest the demo channel (fixture speech served on 127.0.0.1) and search it")
    s.add_argument("--fixtures", help="folder with jfk.flac and sample.wav (default: the recordings packaged with chaffee_assets)")
    s.set_defaults(fn=cmd_demo)
    return p


def _quiet_libraries() -> None:
    """Keep the terminal to what the user asked for: known, harmless library chatter is dropped."""
    # Ray and Ray Serve announce every connection and deployment at INFO; the models log in the
    # service's own files (.chaffee/ray), never here
    for name in ("ray", "ray.serve", "speechbrain", "pyannote", "faster_whisper"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "0")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default_signals()  # started in the background (`nohup chaffee dev &`), it still stops on SIGTERM
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        _quiet_libraries()
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(var, value)
    try:
        return args.fn(get_settings(), args)
    except Exception as e:  # noqa: BLE001 - the known classes become one line; the rest stays a traceback
        line = known_failure(e)
        if line is None:
            raise
        print(f"chaffee: error: {line}", file=sys.stderr)
        return 2


def known_failure(e: BaseException) -> str | None:
    """One line for the failures a user meets and can act on; None for a bug (a traceback)."""
    import errno

    from chaffee_assets.archive.db import redacted

    if isinstance(e, ChaffeeError | FileNotFoundError):
        return str(e)
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full ({e.filename or e.strerror}): free some space and try again"
    if isinstance(e, PermissionError):
        return f"permission denied: {e.filename or e}"
    for cause in _causes(e):
        name = type(cause).__module__ + "." + type(cause).__name__
        if name.startswith(("sqlalchemy.exc.", "psycopg", "psycopg2")) and "Operational" in type(cause).__name__:
            text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            return f"the database is unreachable ({redacted(text)}): is it running (`chaffee up`)?"
    return None


def _causes(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


if __name__ == "__main__":
    sys.exit(main())
