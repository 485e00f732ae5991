"""The `new_uploads` sensor against an RSS feed served on 127.0.0.1, on a real instance."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from chaffee_assets.archive import db, sources
from chaffee_assets.defs.build import build_resources
from chaffee_assets.defs.sensors import build_new_uploads_sensor
from chaffee_assets.testing.demo_channel import write_feed


def _tick(instance, settings, url, cursor=None):
    sensor = build_new_uploads_sensor(60)
    resources = build_resources(settings.model_copy(update={"channel_url": url}), settings.database_url)
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={k: resources[k] for k in ("channel", "archive")})
    return sensor(ctx), ctx


def _apply(instance, result):
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))


def test_new_item_gives_one_partition_and_one_run_and_unchanged_feed_nothing(instance, settings, demo_channel):
    base_url, folder, items = demo_channel
    feed_url = f"{base_url}/feed.rss"
    write_feed(items[:2], base_url, folder / "feed.rss")

    first, _ = _tick(instance, settings, feed_url)
    assert [r.partition_key for r in first.run_requests] == [items[0].video_id, items[1].video_id]  # oldest first
    _apply(instance, first)
    with db.connect(settings.database_url) as conn:
        assert sources.lookup(conn, items[0].video_id).url.startswith(base_url)

    # unchanged feed: nothing new
    again, _ = _tick(instance, settings, feed_url, first.cursor)
    assert isinstance(again, dg.SkipReason)

    # one new upload: exactly one partition and one run
    write_feed(items[:3], base_url, folder / "feed.rss")
    third, _ = _tick(instance, settings, feed_url, first.cursor)
    assert [r.partition_key for r in third.run_requests] == [items[2].video_id]
    assert [list(r.partition_keys) for r in third.dynamic_partitions_requests] == [[items[2].video_id]]
    _apply(instance, third)

    # an item removed from the feed changes nothing stored
    write_feed(items[1:3], base_url, folder / "feed.rss")
    removed, _ = _tick(instance, settings, feed_url, third.cursor)
    assert isinstance(removed, dg.SkipReason)
    assert set(instance.get_dynamic_partitions("videos")) == {i.video_id for i in items[:3]}
    assert set(json.loads(third.cursor)["requested"]) == {i.video_id for i in items[:3]}


def test_max_per_tick_requests_the_oldest_first(instance, settings, demo_channel):
    base_url, _, items = demo_channel
    sensor = build_new_uploads_sensor(60)
    resources = build_resources(settings.model_copy(update={"channel_url": f"{base_url}/feed.rss", "sensor_max_per_tick": 2}), settings.database_url)
    ctx = dg.build_sensor_context(instance=instance, resources={k: resources[k] for k in ("channel", "archive")})
    result = sensor(ctx)
    assert [r.partition_key for r in result.run_requests] == [i.video_id for i in items[:2]]


def test_unreachable_or_malformed_feed_fails_the_tick_and_keeps_the_cursor(instance, settings, demo_channel, tmp_path):
    """A dead channel is not "nothing new": the tick fails (red in the UI, with the cause), the
    cursor stays where it was."""
    from chaffee_assets.defs.sensors import ChannelUnavailable

    base_url, folder, _ = demo_channel
    cursor = json.dumps({"requested": ["kept"]})
    (folder / "broken.rss").write_text("<rss><channel><item><title>unterminated")
    for url, cause in (("http://127.0.0.1:9/feed.rss", "network error"), (f"{base_url}/missing.rss", "HTTP 404"),
                       (f"{base_url}/broken.rss", "malformed")):
        with pytest.raises(ChannelUnavailable, match=f"channel not listed.*{cause}") as failed:
            _tick(instance, settings, url, cursor)
        assert url in str(failed.value)
    assert instance.get_dynamic_partitions("videos") == []
