import dagster as dg


def test_code_location_loads_with_the_seven_assets_and_the_sensor():
    from chaffee_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {"audio", "transcript", "diarization", "speaker_labels", "segments", "embeddings", "db_rows"}
    # the chain, as the design fixes it
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    assert parents["transcript"] == {"audio"}
    assert parents["speaker_labels"] == {"audio", "transcript", "diarization"}
    assert parents["embeddings"] == {"segments"}
    assert parents["db_rows"] == {"segments", "embeddings", "audio"}
    # GPU steps share the gpu pool
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys()}
    assert {a for a, p in pools.items() if p and "gpu" in p} == {"transcript", "diarization", "speaker_labels", "embeddings"}
    assert defs.get_sensor_def("new_uploads") is not None


def test_embedding_model_is_in_the_code_version_of_embeddings_and_db_rows_only():
    from chaffee_assets.defs.assets import all_assets

    def versions(model: str) -> dict[str, str | None]:
        return {k.to_user_string(): v for x in all_assets(model) for k, v in x.code_versions_by_key.items()}

    a, b = versions("minilm"), versions("mpnet")
    assert len(a) == 7
    assert {k for k in a if a[k] != b[k]} == {"embeddings", "db_rows"}


def test_importing_the_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, chaffee_assets.definitions; print('torch' in sys.modules, 'faster_whisper' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
