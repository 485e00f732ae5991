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


def test_a_load_inside_a_clock_is_that_steps_and_outside_one_is_nobodys():
    now = time.time()
    clock.record_load("whisper", now - 2, now - 1)  # a service warming up: no step's
    with clock.step_clock() as c:
        clock.record_load("pyannote", now, now + 1)
    assert [k for k, _, _ in c.loads] == ["pyannote"]
    assert c.model_ready_at() == now + 1 and abs(c.load_seconds - 1.0) < 1e-6
    with clock.step_clock() as other:
        pass
    assert other.loads == [] and other.model_ready_at() is None


def test_outside_a_clock_model_calls_record_nothing():
    with clock.model_call("whisper"):
        assert clock.current() is None
    with clock.step_clock() as c:
        pass
    assert c.intervals == [] and c.inference_seconds == 0.0


def test_process_started_at_is_when_the_process_began():
    """A process that waits 1.5 s before asking still answers its own start, to ~10 ms."""
    import subprocess
    import sys

    code = ("import time, sys; t0 = time.time(); time.sleep(1.5)\n"
            "from chaffee_assets.lib import clock\n"
            "print(t0 - clock.process_started_at())")
    before = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lag = float(out.split()[-1])  # from the process's start to its first line of Python
    assert 0.0 <= lag < 1.0, lag
    assert before - 1.0 < time.time() - 1.5 - lag


def test_ecapa_embedding_calls_are_recorded_as_ecapa_time(runtime):
    import numpy as np

    from chaffee_assets.lib.models.ecapa import EcapaEmbedder

    ecapa = EcapaEmbedder(runtime)
    with clock.step_clock() as c:
        out = ecapa.embed([np.random.default_rng(0).normal(0, 0.1, 16_000).astype(np.float32)])
    assert out.shape == (1, 192)
    assert [m for m, _, _ in c.intervals] == ["ecapa"]
    assert c.seconds_by_model()["ecapa"] > 0
