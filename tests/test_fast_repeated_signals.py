"""Signals that arrive faster than Python runs its handler, as the `lowdim` script counts them (``stop_on_signals``).

CPython keeps one pending flag a signal: three Ctrl-Cs while the main thread is inside one long call into C (a big
tensor op, a save) run the Python handler once. The script counts the signals that arrived, not its handler's
calls, so the third still forces the stop as soon as the call returns; and a forked worker's signal (the terminal
sends Ctrl-C to every process of its group: a DataLoader's workers too) is the worker's, not one more of the parent's.

Each test runs a fresh interpreter that tells the test, on its stdout, when it is inside the long call; every wait
has a timeout, so a test fails with what the child said, never hangs. Each next signal is sent once the child has
taken the previous one (it left the child's pending set, ``/proc/PID/status``): standard signals do not queue, so
two sent while the child gets no CPU time (a loaded machine) merge into one in the kernel, before any counting can
see them (review BT9).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

READY_TIMEOUT = 60.0  # the child's imports (rich, typer, lowdim) on a loaded machine, and its regex calibration
OUTCOME_TIMEOUT = 60.0
SIGNAL_GAP = 0.05  # seconds between the signals, as fast as a user presses Ctrl-C again and again
TAKEN_TIMEOUT = 30.0  # for the child to take a signal: it only needs a moment of CPU time
SIGINT_BIT = 1 << (signal.SIGINT - 1)  # in /proc/PID/status's SigPnd and ShdPnd masks

# The child: the script's handlers, an optimizer update (``held``) and in it one call into C that takes about
# LONG_CALL seconds and never looks for signals (a key derivation; a regex would: ``re`` checks them as it goes).
CHILD = r"""
import hashlib, os, signal, sys, time
from lowdim_cli.errors import stop_on_signals
from lowdim_sd import stopping

LONG_CALL = 1.5
MODE = sys.argv[1]

def long_call(rounds):
    hashlib.pbkdf2_hmac("sha256", b"lowdim", b"salt", rounds)

def seconds_of(rounds):
    start = time.monotonic()
    long_call(rounds)
    return time.monotonic() - start

def tell(line):
    print(line, flush=True)

# Calibrated here, where the test runs: a fixed count of rounds is a tenth of a second on one machine, ten on another.
rounds = max(1, round(100_000 * LONG_CALL / seconds_of(100_000)))

stop_on_signals()
worker = None
if MODE == "fork":
    worker = os.fork()
    if worker == 0:  # a worker that leaves its stop to the parent, with a Python handler: CPython's catches each
        signal.signal(signal.SIGINT, lambda signum, frame: None)  # signal, and writes its byte to any wakeup fd
        time.sleep(60)
        os._exit(0)
try:
    with stopping.held():
        tell("inside")
        long_call(rounds)
        call_ended = time.monotonic()
        tell(f"noted {call_ended}")
except KeyboardInterrupt:
    tell(f"forced {time.monotonic()}")
finally:
    if worker:
        os.kill(worker, signal.SIGKILL)
        os.waitpid(worker, 0)
"""


class Child:
    """The child interpreter, its stdout read line by line by a thread, so that each wait can time out."""

    def __init__(self, mode: str) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        # A session of its own: signals sent to its group reach it and its forked worker, nothing else.
        self.process = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def next_line(self, timeout: float, waiting_for: str) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"no line from the child within {timeout:.0f} s, waiting for {waiting_for}; "
                                 f"its stderr: {self.stderr()!r}") from None

    def stderr(self) -> str:
        assert self.process.stderr is not None
        if self.process.poll() is None:
            return "(still running)"
        return self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the child and any worker it forked
        self.process.wait(timeout=10)


def sigint_pending(pid: int) -> bool | None:
    """Whether a SIGINT sent to ``pid`` has not reached it yet (the kernel holds it until the process runs);
    None where there is no /proc to tell."""
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:  # no /proc (macOS), or the process has ended: its outcome line says what it did
        return None
    return bool((int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) & SIGINT_BIT)


def wait_until_taken(pid: int) -> None:
    """Until the child has taken the last SIGINT sent, and at least SIGNAL_GAP: one sent while the previous is still
    pending would merge into it, and the test would measure the scheduler, not the count."""
    time.sleep(SIGNAL_GAP)
    deadline = time.monotonic() + TAKEN_TIMEOUT
    while sigint_pending(pid):
        assert time.monotonic() < deadline, f"the child had not taken a SIGINT after {TAKEN_TIMEOUT:.0f} s"
        time.sleep(0.001)


def signals_during_the_long_call(mode: str, count: int) -> tuple[str, float]:
    """Send ``count`` SIGINTs to the child's process group while it is inside the long call, each once the child
    has taken the previous one; return what it said of its stop ('noted' or 'forced') and when the last was sent."""
    child = Child(mode)
    try:
        ready = child.next_line(READY_TIMEOUT, "'inside'")
        assert ready == "inside", f"the child said {ready!r}; its stderr: {child.stderr()!r}"
        for sent in range(count):
            if sent:
                wait_until_taken(child.process.pid)
            os.killpg(child.process.pid, signal.SIGINT)
        last_sent = time.monotonic()
        outcome = child.next_line(OUTCOME_TIMEOUT, "the stop's outcome")
        child.process.wait(timeout=OUTCOME_TIMEOUT)
    finally:
        child.kill()
    what, _, when = outcome.partition(" ")
    assert what in ("noted", "forced"), f"the child said {outcome!r}; its stderr: {child.stderr()!r}"
    # Time.monotonic is the system's own clock on Linux and macOS, the same in both processes.
    assert float(when) > last_sent, "the long call ended before the last signal was sent: make LONG_CALL longer"
    return what, last_sent


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX signals")
def test_three_fast_ctrl_cs_during_one_long_call_force_the_stop_as_it_returns():
    what, _ = signals_during_the_long_call("plain", 3)
    assert what == "forced", "the third of three fast Ctrl-Cs was counted as one: the stop was only noted"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_workers_ctrl_c_is_not_counted_as_the_parents():
    # Two Ctrl-Cs to the group: the parent's and its worker's would make four, one more than forces the stop.
    what, _ = signals_during_the_long_call("fork", 2)
    assert what == "noted", "a forked worker's signals were counted as the parent's: two Ctrl-Cs forced the stop"
