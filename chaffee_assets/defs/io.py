"""The IO manager that keeps intermediate artifacts in the artifact store, one file per
(asset, video). An input or output typed `dict[str, T]` covers several videos at once (the
batched `embeddings` / `db_rows` steps): one entry per partition key. Artifacts are dataclasses, so
an output that is a dict (a generator step's output carries no annotation) is one per partition."""


import typing
from functools import cached_property

import dagster as dg

from chaffee_assets.lib.artifacts import ArtifactStore


def _per_partition_type(tp: object) -> tuple[bool, type]:
    """(is a dict keyed by partition, the value type) for an input/output annotation."""
    if typing.get_origin(tp) is dict:
        return True, typing.get_args(tp)[1]
    return False, tp  # type: ignore[return-value]


# An input's metadata: partitions without an artifact are left out of its dict instead of failing
# the step (a re-embed over every partition with failed videos among them).
ALLOW_MISSING = "chaffee/allow_missing_partitions"


class ArtifactIOManager(dg.ConfigurableIOManager):
    root: str
    audio_retention: str = "keep"  # the AUDIO_RETENTION setting: "drop" removes the audio after db_rows

    @cached_property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:
            return
        asset = context.asset_key.path[-1]
        keys = context.asset_partition_keys
        many = isinstance(obj, dict) or _per_partition_type(context.dagster_type.typing_type)[0]
        items = obj if many else {keys[0]: obj}
        assert isinstance(items, dict)
        missing = set(keys) - set(items)
        if missing:
            raise dg.Failure(f"{asset}: no output for partitions {sorted(missing)}")
        for key in keys:  # no log line per artifact: each is an event-log write (its path is metadata)
            self.store.save(asset, key, items[key])
        if len(keys) == 1:
            context.add_output_metadata({"artifact": dg.MetadataValue.path(self.store.url(asset, keys[0], type(items[keys[0]])))})

    def load_input(self, context: dg.InputContext) -> object:
        asset = context.asset_key.path[-1]
        keys = context.asset_partition_keys
        many, value_type = _per_partition_type(context.dagster_type.typing_type)
        if many:
            if (context.definition_metadata or {}).get(ALLOW_MISSING):
                keys = [key for key in keys if self.store.exists(asset, key, value_type)]
            return {key: self.store.load(asset, key, value_type) for key in keys}
        if len(keys) != 1:
            raise dg.Failure(f"input {asset} spans {len(keys)} partitions but is not typed dict[str, ...]")
        return self.store.load(asset, keys[0], value_type)
