"""A stop that a signal asked for (SIGTERM: a cluster's preemption, `kill`, `timeout`; Ctrl-C), seen by the
training loops.

The `lowdim` script's handlers raise KeyboardInterrupt at once (outside ``held``), as Python's Ctrl-C does;
but Python ignores an exception raised while a finalizer (``__del__``) runs, so a handler also leaves this flag,
which every training loop checks at each step: a stop is never lost. A second signal while the first one's stop
is handled (its checkpoint written, its line printed) is only noted, so the stop keeps what it keeps and says so.
Torch-free, so the script can install its handlers before any import.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

_requested = threading.Event()
_holding = threading.local()  # per thread: a signal's handler runs in the main thread, a web page's job in its own


def request(signum: int) -> None:
    _requested.set()
    if getattr(_holding, "depth", 0):
        return  # inside ``held``: the loop's next ``check`` raises it, once the update is whole
    if stop_under_way():
        return  # a second Ctrl-C while the first is handled: cutting it short would lose its checkpoint and line
    # Bare, as Python's own Ctrl-C is: a command stopped before it kept anything then says the CLI's
    # "Interrupted. Nothing half-written was left behind.", not a note reading "Signal 2".
    raise KeyboardInterrupt


def stop_under_way() -> bool:
    """Whether this thread is now handling a stop: an ``except`` or ``finally`` block on a KeyboardInterrupt's way
    out (saving the checkpoint, printing the line), the KeyboardInterrupt itself or the cause of what it became."""
    error, hops = sys.exc_info()[1], 0
    while error is not None and hops < 8:
        if isinstance(error, KeyboardInterrupt):
            return True
        error, hops = error.__cause__ or error.__context__, hops + 1
    return False


@contextlib.contextmanager
def held() -> Iterator[None]:
    """A section a signal's stop must not cut in two: an optimizer update, which stopped halfway leaves the
    weights of no step, so nothing could be saved. A stop asked for inside is kept for the loop's next
    ``check``, where the step is whole and its checkpoint can be written. Only the `lowdim` script's handlers
    defer (``request``); a KeyboardInterrupt raised some other way still lands at once."""
    _holding.depth = getattr(_holding, "depth", 0) + 1
    try:
        yield
    finally:
        _holding.depth -= 1


def check() -> None:
    """Raise the KeyboardInterrupt a signal asked for, if an earlier one was swallowed; once."""
    if _requested.is_set():
        _requested.clear()
        raise KeyboardInterrupt


def ask() -> None:
    """Ask the training loop in flight to stop at its next step, from another thread (the web page's Stop
    button, its server's Ctrl-C): ``check`` raises the KeyboardInterrupt there, in the loop's own thread."""
    _requested.set()


def withdraw() -> None:
    """Forget a stop nobody took up (the job it was meant for ended first), so that the next job runs."""
    _requested.clear()
