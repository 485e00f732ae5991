import time

from chaffee_assets.lib import clock


def test_nested_model_calls_never_overlap_and_cover_the_outer_call():
    with clock.step_clock() as c:
        with clock.model_call("diarize"):
            time.sleep(0.02)
            with clock.model_call("ecapa"):
                time.sleep(0.02)
            time.sleep(0.02)
    models = [m for m, _, _ in c.intervals]
    assert models == ["diarize", "ecapa", "diarize"]
    for (_, _, end), (_, start, _) in zip(c.intervals, c.intervals[1:], strict=False):
        assert end <= start
    by_model = c.seconds_by_model()
    assert by_model["diarize"] >= 0.035 and by_model["ecapa"] >= 0.015
    timeline = c.summary()["timeline"]
    assert [m for m, _, _ in timeline["models"]] == ["diarize", "ecapa", "diarize"]
    assert timeline["process_started_at"] <= timeline["body"][0] <= timeline["body"][1]


def test_loads_outside_a_clock_go_to_the_step_that_uses_them():
    now = time.time()
    clock.record_load("whisper", now - 2, now - 1)
    clock.record_load("ecapa", now - 1, now - 0.5)
    with clock.step_clock(uses=["ecapa"]) as first:
        pass
    with clock.step_clock(uses=["whisper"]) as second:
        clock.record_load("pyannote", now, now + 1)  # inside a clock: its own
    assert [k for k, _, _ in first.loads] == ["ecapa"]
    assert [k for k, _, _ in second.loads] == ["whisper", "pyannote"]
    assert second.model_ready_at() == now + 1
    assert abs(second.load_seconds - 2.0) < 1e-6


def test_outside_a_clock_model_calls_are_free_and_process_start_is_in_the_past():
    with clock.model_call("whisper"):
        pass
    assert clock.current() is None
    assert 0 <= time.time() - clock.process_started_at() < 24 * 3600


def test_ecapa_embedding_calls_are_recorded_as_ecapa_time(runtime):
    import numpy as np

    from chaffee_assets.lib.models.ecapa import EcapaEmbedder

    ecapa = EcapaEmbedder(runtime)
    with clock.step_clock() as c:
        out = ecapa.embed([np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)])
    assert out.shape == (1, 192)
    assert [m for m, _, _ in c.intervals] == ["ecapa"]
    assert c.seconds_by_model()["ecapa"] > 0
