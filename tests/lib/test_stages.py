from chaffee_assets.lib.stages import stage_pieces


def test_a_step_making_several_assets_is_split_at_its_materialisations():
    events = [
        (0.0, "STEP_START", "audio", None), (1.0, "ASSET_MATERIALIZATION", "audio", "audio"),
        (1.2, "STEP_SUCCESS", "audio", None),
        (2.0, "STEP_START", "speech", None), (12.0, "ASSET_MATERIALIZATION", "speech", "transcript"),
        (15.0, "ASSET_MATERIALIZATION", "speech", "diarization"), (15.5, "ASSET_MATERIALIZATION", "speech", "speaker_labels"),
        (15.75, "STEP_SUCCESS", "speech", None),
    ]
    assert stage_pieces(events) == [
        ("audio", 0.0, 1.0), ("audio", 1.0, 1.2),
        ("transcript", 2.0, 12.0), ("diarization", 12.0, 15.0), ("speaker_labels", 15.0, 15.5), ("speaker_labels", 15.5, 15.75),
    ]


def test_a_failed_steps_tail_is_the_step_and_a_step_without_assets_keeps_its_key():
    events = [
        (0.0, "STEP_START", "speech", None), (10.0, "ASSET_MATERIALIZATION", "speech", "transcript"),
        (30.0, "STEP_FAILURE", "speech", None),
        (31.0, "STEP_START", "check", None), (32.0, "STEP_SUCCESS", "check", None),
    ]
    assert stage_pieces(events) == [("transcript", 0.0, 10.0), ("speech", 10.0, 30.0), ("check", 31.0, 32.0)]


def test_events_of_steps_never_started_are_ignored():
    assert stage_pieces([(1.0, "ASSET_MATERIALIZATION", "x", "x"), (2.0, "STEP_SUCCESS", "x", None)]) == []
