"""How the `lowdim` script counts stop signals (``lowdim_cli.signal_count``), in this process, with no child
interpreter and no timing: each test writes the signals' bytes to the wakeup socket as CPython's C handler does, or
has a helper thread signal itself, and calls the handler path.

What a user relies on (review BT1-BT3): only stop signals count, never another signal's byte (torch's DataLoader
has a Python SIGCHLD handler, so each worker's exit writes one); a signal is counted once however many handler
calls see it; bytes left by an earlier command in the same process are not this one's; a handler call that brings no
new signal does nothing, so a forced stop's cleanup is not cut short; and after a fork (a DataLoader's workers) the
parent counts each signal again."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from lowdim_cli import errors
from lowdim_cli.signal_count import SignalCount, WakeupSocket
from lowdim_sd import stopping

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")


class Quit(Exception):
    """What ``os._exit`` raises here: the handler quitting without cleanup."""


def quit_here(code: int) -> None:
    raise Quit(code)


@pytest.fixture(autouse=True)
def signal_state_put_back(monkeypatch):
    """No wakeup fd at the start (so the socket is ours to take, whatever ran before), an empty socket, and the
    process's wakeup fd, handlers, unraisablehook and stop flag as they were afterwards."""
    previous = signal.set_wakeup_fd(-1)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # stop_on_signals replaces it
    WakeupSocket.drained(frozenset())
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        WakeupSocket.drained(frozenset())
        signal.set_wakeup_fd(previous)
        stopping.withdraw()


def arrive(*signums: int) -> None:
    """The bytes CPython's C handler writes to the wakeup fd, one a signal that arrived."""
    assert WakeupSocket.ends is not None
    WakeupSocket.ends[1].send(bytes(signums))


def test_another_signals_bytes_are_not_counted_as_stops():
    count = SignalCount([signal.SIGINT])
    arrive(signal.SIGCHLD, signal.SIGCHLD, signal.SIGINT)  # two DataLoader workers exit, one Ctrl-C
    assert count.counted() == 1


def test_a_signal_is_counted_once_however_many_handler_calls_see_it():
    count = SignalCount([signal.SIGINT])
    arrive(signal.SIGINT, signal.SIGINT)  # two Ctrl-Cs; the first call reads both bytes
    assert count.counted() == 2
    assert count.counted() == 2  # the second's own call: its byte was already read


def test_bytes_left_before_the_command_started_are_not_its_own():
    SignalCount([signal.SIGINT])
    arrive(signal.SIGINT, signal.SIGINT)  # an earlier command's in this process (the Python API, a test)
    count = SignalCount([signal.SIGINT])
    assert count.total == 0
    arrive(signal.SIGINT)
    assert count.counted() == 1


def script_handler() -> object:
    """The `lowdim` script's SIGTERM handler, installed by ``stop_on_signals``."""
    errors.stop_on_signals()
    return signal.getsignal(signal.SIGTERM)


def test_two_signals_in_an_update_are_noted_however_many_calls_they_bring():
    stop = script_handler()
    arrive(signal.SIGTERM, signal.SIGTERM)
    with stopping.held():
        stop(signal.SIGTERM, None)  # reads both bytes: noted, for the loop's next check
        stop(signal.SIGTERM, None)  # the second signal's call, already counted: not a third
    with pytest.raises(KeyboardInterrupt):
        stopping.check()


def test_a_call_that_brings_no_new_signal_does_not_cut_the_forced_stops_cleanup_short(monkeypatch):
    stop = script_handler()
    monkeypatch.setattr(os, "_exit", quit_here)
    arrive(signal.SIGTERM, signal.SIGTERM, signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):  # three at once: the forced stop, with its cleanup
        stop(signal.SIGTERM, None)
    stop(signal.SIGTERM, None)  # a call for one of those three: the cleanup goes on
    stop(signal.SIGTERM, None)
    arrive(signal.SIGTERM)  # a fourth signal: that one quits
    with pytest.raises(Quit):
        stop(signal.SIGTERM, None)


def signalled_three_times_in_one_handler_call(count: SignalCount) -> list[int]:
    """What ``count.counted()`` said at each call of a SIGUSR1 handler, for three SIGUSR1s that its C handler took
    in a helper thread while the main thread waited in ``join``: the Python handler runs once, after."""
    said: list[int] = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: said.append(count.counted()))

    def signal_myself_three_times() -> None:
        for _ in range(3):  # to this thread: its C handler runs at once, each time; no Python handler runs here
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    helper = threading.Thread(target=signal_myself_three_times)
    helper.start()
    helper.join()
    for _ in range(3):
        pass  # the main thread's next bytecodes run the pending Python handler
    return said


def test_three_signals_in_one_handler_call_count_three():
    assert signalled_three_times_in_one_handler_call(SignalCount([signal.SIGUSR1])) == [3]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_after_a_fork_the_parent_counts_each_signal_again():
    count = SignalCount([signal.SIGUSR1])  # made before any worker forks, as the script's is: not made anew after
    worker = os.fork()
    if worker == 0:  # a worker that ends at once
        os._exit(0)
    os.waitpid(worker, 0)
    # The fork lent the wakeup fd (a worker must not start with it) and took it back: each signal's byte is read.
    assert signalled_three_times_in_one_handler_call(count) == [3], "after the fork, three signals counted as one"
