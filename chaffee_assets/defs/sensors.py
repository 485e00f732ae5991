"""`new_uploads`: polls the channel, adds a partition per unseen video and requests its run."""


import json

import dagster as dg

from chaffee_assets.archive import sources
from chaffee_assets.defs.partitions import videos
from chaffee_assets.defs.resources import ArchiveResource
from chaffee_assets.lib.errors import FeedError, SourceConflict

PIPELINE = dg.AssetSelection.all()


class ChannelResource(dg.ConfigurableResource):
    url: str
    max_per_tick: int = 25
    timeout_seconds: float = 120.0  # the listing's deadline


class ChannelUnavailable(Exception):
    """The channel could not be listed: the sensor's tick fails with this cause."""


def run_priority(n: int, total: int) -> dict[str, str]:
    """The n-th oldest of a tick's videos gets a higher run priority than the newer ones: Dagster
    orders the run queue and the `gpu` pool's waiting steps by it (run priority plus the step's own,
    see `gpu_priority`), so the oldest video in flight finishes its GPU steps first and frees its run
    slot, instead of every run in flight waiting on the pool at once."""
    return {"dagster/priority": str(10 * (total - n))}


def _cursor_ids(cursor: str | None) -> set[str]:
    if not cursor:
        return set()
    try:
        return set(json.loads(cursor).get("requested", []))
    except (ValueError, AttributeError):
        return set()


def build_new_uploads_sensor(interval_seconds: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_uploads",
        minimum_interval_seconds=interval_seconds,
        target=PIPELINE,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Polls CHANNEL_URL with yt-dlp's flat playlist listing; one partition and one run per new video, oldest first.",
    )
    def new_uploads(context: dg.SensorEvaluationContext, channel: ChannelResource, archive: ArchiveResource):
        from chaffee_assets.lib.media.feed import list_channel

        try:
            entries = list_channel(channel.url, channel.timeout_seconds)
        except FeedError as e:  # a dead channel is not "nothing new": the tick fails (red, with the cause)
            raise ChannelUnavailable(f"channel not listed (cursor kept): {e}") from None

        requested = _cursor_ids(context.cursor)
        known = set(context.instance.get_dynamic_partitions(videos.name))
        new = [e for e in entries if e.video_id not in requested and e.video_id not in known][: channel.max_per_tick]
        if not new:
            return dg.SkipReason(f"no new videos among {len(entries)} listed")

        ids = []
        with archive.connect() as conn:
            for entry in new:
                try:
                    ids += [s.video_id for s in sources.register(conn, [entry])]
                except SourceConflict as e:  # this entry only: the others go on
                    context.log.warning("skipped: %s", e)
        if not ids:
            return dg.SkipReason(f"no new videos among {len(entries)} listed ({len(new)} refused)")
        context.log.info("new videos: %s", ", ".join(ids))
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(partition_key=i, run_key=f"video:{i}", tags=run_priority(n, len(ids))) for n, i in enumerate(ids)
            ],
            dynamic_partitions_requests=[videos.build_add_request(ids)],
            cursor=json.dumps({"requested": sorted(requested | set(ids))}),
        )

    return new_uploads
