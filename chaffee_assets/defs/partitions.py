from collections.abc import Mapping

import dagster as dg

# One partition per video; the key is the (validated) video id.
videos = dg.DynamicPartitionsDefinition(name="videos")


def run_video(tags: Mapping[str, str]) -> str | None:
    """The video a run is for, from its tags: `dagster/partition` (the sensor's, `chaffee ingest`'s)
    or a range of one partition (a backfill's per-video runs); None for a run over several."""
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    return start if start is not None and start == end else None
