"""Sharing the cores among the model calls computing in the service's process: torch threads follow
the calls computing now, nested calls count once, and a long call gives cores up and takes them back
between its batches."""

import threading

import pytest
import torch

from chaffee_assets.lib import clock
from chaffee_assets.lib.models import threads


@pytest.fixture
def share():
    before = torch.get_num_threads()
    s = threads.share_cores(cores=2, interval_s=0.0)
    yield s
    threads.stop_sharing()
    torch.set_num_threads(before)


def test_calls_count_while_they_compute_and_nested_calls_count_once(share):
    assert share.active() == 0 and share.share() == 2
    with clock.model_call("pyannote"):
        assert share.active() == 1 and torch.get_num_threads() == 2  # alone: both cores
        with clock.model_call("ecapa"):  # nested: still one computation
            assert share.active() == 1
    assert share.active() == 0


def test_threads_follow_the_share_between_batches(share):
    """A long call (pyannote, ECAPA batches) calls `rebalance` between batches: it gives a core up
    when another model starts and takes it back when that one ends."""
    release, entered = threading.Event(), threading.Event()

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
        assert share.active() == 2
        threads.rebalance()
        seen.append(torch.get_num_threads())
        release.set()
        t.join()
        threads.rebalance()
        seen.append(torch.get_num_threads())
    assert seen == [2, 1, 2]


def test_without_sharing_nothing_is_counted_or_changed():
    threads.stop_sharing()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with clock.model_call("pyannote"):
            threads.rebalance()
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_rebalance_is_rate_limited():
    s = threads.CoreShare(cores=2, interval_s=60)
    with s.computing():
        assert s.apply() is None  # applied on entry, not again within the interval
        assert s.apply(force=True) == 2
    assert s.active() == 0


def test_threads_per_model_divides_the_cores():
    assert threads.threads_per_model(3, 2) == 3
    assert threads.threads_per_model(0, 1) == threads.available_cores()
    assert threads.threads_per_model(0, 10 * threads.available_cores()) == 1
