"""The model service as the runs meet it: a real Ray head and Serve application (the session's,
`conftest.model_service`), real models on the CPU.

- passages of two callers in two processes arriving together are embedded in one batch;
- a replica killed in the middle of a request: the caller asks again and gets the right answer;
- the application redeployed while a caller waits: the caller reconnects and carries on;
- a second Ray node offering the "GPU" resource hosts the replicas and serves callers on the head.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from chaffee_assets.lib.models.client import ModelClient
from tests.helpers.threads import Background

pytestmark = pytest.mark.slow


@pytest.fixture
def client(model_service):
    with ModelClient(model_service, unavailable_grace_s=300) as c:
        yield c


def _stored_speech(tmp_path, fixtures_dir, seconds: float | None = None):
    from chaffee_assets.lib.artifacts import ArtifactStore
    from chaffee_assets.lib.voices import read_audio

    wav = read_audio(fixtures_dir / "sample.wav")
    if seconds:
        wav = np.tile(wav, int(np.ceil(seconds / 30.0)))[: int(seconds * 16_000)]
    return ArtifactStore(str(tmp_path / "artifacts")).save_waveform("audio", "svc-test", wav), len(wav) / 16_000


def test_two_callers_passages_share_one_embedder_batch(model_service, tmp_path):
    """Two processes (as two runs' embedding steps are) ask at the same moment: one forward pass."""
    start_at = time.time() + 12.0  # after both have imported Ray and connected
    code = textwrap.dedent(f"""
        import json, sys, time
        from chaffee_assets.lib.models.client import ModelClient
        with ModelClient({model_service!r}) as c:
            c.connect()
            c.call("text_model", "minilm")
            time.sleep(max(0.0, {start_at} - time.time()))
            a = c.call("embed_texts", [f"passage {{i}} of caller " + sys.argv[1] for i in range(5)], "minilm")
            print(json.dumps({{"shape": list(a.value.shape), "batch": a.batch}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, name], stdout=subprocess.PIPE, text=True) for name in "ab"]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    import json

    answers = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    assert all(a["shape"] == [5, 384] for a in answers)
    assert answers[0]["batch"]["ids"] == answers[1]["batch"]["ids"], answers
    assert answers[0]["batch"]["callers"] == 2 and answers[0]["batch"]["items"] == 10


def test_the_replica_runs_with_its_own_environment(client):
    """The replica's process (Ray starts it) has `REPLICA_ENV`: two malloc arenas, read from the process."""
    from chaffee_assets.lib.models.serve_app import REPLICA_ENV

    pid = int(client.call("info").replica.rsplit(":", 1)[1])
    environ = dict(e.split("=", 1) for e in open(f"/proc/{pid}/environ").read().split("\0") if "=" in e)
    assert {k: environ.get(k) for k in REPLICA_ENV} == REPLICA_ENV


def test_a_replica_killed_mid_request_is_asked_again_and_answers(client, tmp_path, fixtures_dir):
    from chaffee_assets.lib.types import AsrOptions, AudioRef, VideoMeta

    url, seconds = _stored_speech(tmp_path, fixtures_dir, seconds=240.0)
    regions = client.call("speech_regions", url, "svc-test").value
    strict = client.call("speech_regions", url, "svc-test", 0.95).value  # VAD_THRESHOLD reaches the service
    assert sum(b - a for a, b in strict) < sum(b - a for a, b in regions)
    audio = AudioRef(VideoMeta("svc-test", "t", url), url, seconds, regions)
    expected = client.call("transcribe", audio, AsrOptions()).value.text
    victim = client.call("info").replica

    worker = Background(lambda: client.call("transcribe", audio, AsrOptions()))
    time.sleep(3.0)  # well inside the transcription of 4 minutes of speech
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
    answer = worker.answer(timeout=600)
    assert answer.replica != victim  # a new replica answered
    assert answer.value.text == expected  # the whole transcript, nothing lost or doubled


def test_the_service_redeployed_while_a_caller_waits(client, model_service, tmp_path, fixtures_dir):
    from chaffee_assets.instance import model_service as ms
    from chaffee_assets.settings import Settings

    url, _ = _stored_speech(tmp_path, fixtures_dir)
    client.call("info")  # connected, with a handle: a run that waits for its `gpu` slot
    settings = Settings(state_dir=tmp_path / "state", ray_address=model_service, device="cpu", batch_size=16)
    assert ms.undeploy(settings)
    worker = Background(lambda: client.call("speech_regions", url, "svc-test"))
    time.sleep(2.0)
    assert worker.is_alive()  # asking again while the service is away
    ms.deploy(settings)
    regions = worker.answer(timeout=300).value
    assert regions and all(b > a for a, b in regions)


def test_status_leaves_the_connection_a_client_of_this_process_made(client, model_service, tmp_path):
    """Ray has one driver connection per process: `status` (and deploy, undeploy) in a process whose
    ModelClient is connected closed it under the client's calls (the redeploy test above lost its
    answer that way on CI). Now only a connection they made themselves is closed."""
    import ray

    from chaffee_assets.instance import model_service as ms
    from chaffee_assets.settings import Settings

    client.call("info")
    assert ray.is_initialized()
    settings = Settings(state_dir=tmp_path / "state", ray_address=model_service, device="cpu")
    assert ms.status(settings, probes=1).replicas
    assert ray.is_initialized()


def test_replicas_on_the_gpu_node_serve_callers_on_the_head(tmp_path, fixtures_dir, model_cache):
    """Two Ray nodes on this machine: the head, and a "GPU box" offering the resource the replicas
    need (SERVICE_RESOURCE). The replica lands on the second node and serves a caller of the head."""
    from chaffee_assets.lib.models.client import prepare_ray_env

    prepare_ray_env("127.0.0.1:1")
    from ray.cluster_utils import Cluster

    from chaffee_assets.instance import model_service as ms
    from chaffee_assets.settings import Settings

    os.makedirs("/tmp/ray", exist_ok=True)  # ray.cluster_utils writes its address file there
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        gpu_box = cluster.add_node(num_cpus=2, resources={"chaffee_accelerator": 1})
        settings = Settings(state_dir=tmp_path / "state", ray_address=cluster.address, device="cpu",
                            service_resource="chaffee_accelerator", diarization="off", model_cache=model_cache)
        ms.deploy(settings)
        status = ms.status(settings)
        assert [r.node_id for r in status.replicas] == [gpu_box.node_id]
        assert cluster.head_node.node_id != gpu_box.node_id

        url, _ = _stored_speech(tmp_path, fixtures_dir)
        code = textwrap.dedent(f"""
            from chaffee_assets.lib.models.client import ModelClient
            with ModelClient({cluster.address!r}) as c:
                r = c.call("speech_regions", {url!r}, "two-nodes")
                print(c.call("info").node_id, len(r.value))
        """)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
        node, n = out.stdout.split()[-2:]
        assert node == gpu_box.node_id and int(n) > 0, out.stderr[-2000:]
    finally:
        cluster.shutdown()
