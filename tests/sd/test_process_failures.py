"""What one process of a launched run tells the others when it fails, and what they make of it (lowdim_sd.
process_failures), played here by one test process in the environment torchrun gives each rank, beside a store of
its own as the launcher's."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import torch

from lowdim.errors import LowdimError
from lowdim_sd import process_failures, stopping
from lowdim_sd.process_failures import AnotherProcessFailed, LaunchedRun, another_failure, failing_together
from lowdim_sd.runs import Interrupted

BROKEN = "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242"
UNREADABLE = "faces/p1.png: not a picture"


@pytest.fixture
def launched(monkeypatch):
    """``as_rank(r)``: this process as rank r of a two-process launch, beside a fresh store of the launcher's."""
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    for name, value in {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(store.port),
                        "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RUN_ID": "test"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(process_failures, "LINE_SECONDS", 0.2)
    monkeypatch.setattr(process_failures, "WATCH_SECONDS", 0.05)

    def as_rank(rank: int) -> LaunchedRun:
        monkeypatch.setenv("RANK", str(rank))
        run = LaunchedRun.connect()
        assert run is not None
        return run

    yield as_rank
    process_failures.signals_stop_again()
    stopping.withdraw()


def _fail_in_the_second(as_rank) -> None:
    """Process 2 fails with UNREADABLE, and failing_together tells the others."""
    as_rank(1)
    with pytest.raises(LowdimError, match=UNREADABLE), failing_together():
        raise LowdimError(UNREADABLE)


def test_a_process_that_fails_posts_its_line_and_raises_as_it_was(launched):
    _fail_in_the_second(launched)
    assert str(launched(0).failure()) == f"process 2 of 2 failed: {UNREADABLE}"


def test_a_failure_inside_two_runs_stays_its_own_process_failure(launched):
    launched(1)
    with pytest.raises(LowdimError, match=f"^{UNREADABLE}$"), failing_together(), failing_together():
        raise LowdimError(UNREADABLE)
    assert launched(1).failure() is None and str(launched(0).failure()) == f"process 2 of 2 failed: {UNREADABLE}"


def test_the_first_process_to_fail_is_the_runs_cause(launched):
    first, second = launched(1), launched(0)
    first.post("first")
    second.post("second")
    assert str(second.failure()) == "process 2 of 2 failed: first" and first.failure() is None


def test_a_collective_that_broke_becomes_the_failed_process_line(launched):
    _fail_in_the_second(launched)
    launched(0)
    with pytest.raises(AnotherProcessFailed) as failed, failing_together():
        raise RuntimeError(BROKEN)
    assert str(failed.value) == f"process 2 of 2 failed: {UNREADABLE}"


def test_once_another_failure_is_read_a_signal_is_only_noted(launched):
    _fail_in_the_second(launched)
    launched(0)
    with pytest.raises(AnotherProcessFailed), failing_together():
        raise RuntimeError(BROKEN)
    stopping.request(signal.SIGTERM)  # the launcher's, a moment after the failed process ended: no KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        stopping.check()  # noted


def test_a_collective_that_broke_without_a_line_says_so(launched):
    launched(0)
    with pytest.raises(AnotherProcessFailed, match="^another process of this run ended without a word"), \
            failing_together():
        raise RuntimeError(BROKEN)


def test_a_stop_that_came_with_another_failure_says_both(launched):
    _fail_in_the_second(launched)
    launched(0)
    with pytest.raises(AnotherProcessFailed) as failed, failing_together():
        raise Interrupted("interrupted at step 3; checkpoint saved to h/checkpoints/step-000003")
    assert str(failed.value) == (f"process 2 of 2 failed: {UNREADABLE}; this process stopped with it: interrupted at "
                                 f"step 3; checkpoint saved to h/checkpoints/step-000003")


def test_a_stop_alone_stays_a_stop(launched):
    launched(0)
    with pytest.raises(Interrupted, match="^interrupted at step 3$"), failing_together():
        raise Interrupted("interrupted at step 3")
    assert launched(1).failure() is None  # nor is a stop told to the others as a failure


def test_the_watch_stops_the_loop_at_its_next_step_once_another_process_failed(launched):
    other, main = launched(1), launched(0)
    with pytest.raises(AnotherProcessFailed, match=f"^process 2 of 2 failed: {UNREADABLE}$"), failing_together():
        other.post(UNREADABLE)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the steps of a loop, each checking for a stop
            stopping.check()
            time.sleep(0.01)
    assert main.failure() is not None


def test_joining_stops_with_the_line_of_a_process_that_failed_on_its_way(launched):
    launched(1).post(UNREADABLE)
    launched(0)
    started = time.monotonic()
    with pytest.raises(AnotherProcessFailed, match=f"^process 2 of 2 failed: {UNREADABLE}$"):
        process_failures.join_the_others()
    assert time.monotonic() - started < 2


def test_joining_goes_on_once_every_process_arrived(launched):
    other = launched(1)
    arrived = threading.Thread(target=other.join)
    arrived.start()
    launched(0).join()
    arrived.join(timeout=5)
    assert not arrived.is_alive()


def test_outside_a_launchers_run_errors_pass_as_they_were(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "TORCHELASTIC_USE_AGENT_STORE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match="Connection closed by peer"), failing_together():
        raise RuntimeError(BROKEN)
    assert another_failure(RuntimeError(BROKEN)) is None
    process_failures.join_the_others()  # nothing to wait for


def test_a_failure_that_is_no_mistake_is_posted_by_its_kind():
    assert process_failures.failure_line(ValueError("bad value\nmore")) == "ValueError: bad value"
    assert process_failures.failure_line(LowdimError(UNREADABLE)) == UNREADABLE
