import dagster as dg

# One partition per video; the key is the (validated) video id.
videos = dg.DynamicPartitionsDefinition(name="videos")
