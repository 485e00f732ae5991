"""Sharing the cores among the models computing now: a registry of locked files that other
processes see, that forgets a process that died, and torch threads that follow the share."""

import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from chaffee_assets.lib import clock
from chaffee_assets.lib.models import threads


@pytest.fixture
def share(tmp_path):
    before = torch.get_num_threads()
    s = threads.share_cores(tmp_path / "cores", cores=2, interval_s=0.0)
    yield s
    threads.stop_sharing()
    torch.set_num_threads(before)


def _hold_in_subprocess(directory, seconds: float) -> subprocess.Popen:
    """Another process computing: registered in `directory`, prints 'ready', holds for `seconds`."""
    code = textwrap.dedent(f"""
        import time
        from chaffee_assets.lib.models import threads
        s = threads.CoreShare({str(directory)!r}, cores=2)
        with s.computing():
            print("ready", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_calls_in_other_processes_count_and_a_dead_one_does_not(share):
    assert share.active() == 0 and share.share() == 2
    other = _hold_in_subprocess(share.directory, 60)
    try:
        assert share.active() == 1
        with clock.model_call("pyannote"):
            assert share.active() == 2 and share.share() == 1
            assert torch.get_num_threads() == 1  # set on entry: two models on two cores
            with clock.model_call("ecapa"):  # nested: still one computation
                assert share.active() == 2
        assert share.active() == 1
        other.kill()  # dies inside its call: its lock goes with it
        other.wait()
        assert share.active() == 0
        assert not any(p for p in share.directory.iterdir()), "the dead process's entry is cleaned up"
    finally:
        other.kill()


def test_threads_follow_the_share_between_batches(share):
    """A long call (pyannote, ECAPA batches) calls `rebalance` between batches: it gives a core up
    when another model starts and takes it back when that one ends."""
    release = threading.Event()
    entered = threading.Event()

    def other_model():
        with clock.model_call("whisper"):
            entered.set()
            release.wait(10)

    seen = []
    with clock.model_call("pyannote"):
        threads.rebalance()
        seen.append(torch.get_num_threads())
        t = threading.Thread(target=other_model)
        t.start()
        entered.wait(10)
        threads.rebalance()
        seen.append(torch.get_num_threads())
        release.set()
        t.join()
        threads.rebalance()
        seen.append(torch.get_num_threads())
    assert seen == [2, 1, 2]


def test_without_sharing_nothing_is_registered_or_changed(tmp_path):
    threads.stop_sharing()
    torch.set_num_threads(1)
    probe = threads.CoreShare(tmp_path / "cores", cores=2)
    with clock.model_call("pyannote"):
        threads.rebalance()
        assert probe.active() == 0
        assert torch.get_num_threads() == 1


def test_rebalance_is_rate_limited(tmp_path):
    s = threads.CoreShare(tmp_path / "cores", cores=2, interval_s=60)
    with s.computing():
        assert s.apply() is None  # applied on entry, not again within the interval
        assert s.apply(force=True) == 2
    assert s.active() == 0


def test_a_registry_folder_cleaned_away_is_made_again(share):
    import shutil

    shutil.rmtree(share.directory)
    assert share.active() == 0
    with clock.model_call("ecapa"):
        assert share.active() == 1
    assert share.active() == 0


def test_an_unwritable_registry_never_stops_a_model(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert threads.share_cores(blocked / "cores", cores=2) is None  # cannot be made: sharing stays off
    s = threads.CoreShare(tmp_path / "cores", cores=2)
    s.directory = blocked / "cores"  # the folder became unusable after start
    with s.computing():
        assert s.active() == 0
    threads.stop_sharing()
