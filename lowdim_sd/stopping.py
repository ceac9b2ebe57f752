"""A stop that a signal asked for (SIGTERM: a cluster's preemption, `kill`, `timeout`), seen by the training loops.

The `lowdim` script's handler raises KeyboardInterrupt at once, as Ctrl-C does; but Python ignores an exception
raised while a finalizer (``__del__``) runs, so the handler also leaves this flag, which every training loop
checks at each step: a stop is never lost. Torch-free, so the script can install its handler before any import.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request(signum: int) -> None:
    _requested.set()
    raise KeyboardInterrupt(f"signal {signum}")


def check() -> None:
    """Raise the KeyboardInterrupt a signal asked for, if an earlier one was swallowed; once."""
    if _requested.is_set():
        _requested.clear()
        raise KeyboardInterrupt("signal")


def ask() -> None:
    """Ask the training loop in flight to stop at its next step, from another thread (the web page's Stop
    button, its server's Ctrl-C): ``check`` raises the KeyboardInterrupt there, in the loop's own thread."""
    _requested.set()


def withdraw() -> None:
    """Forget a stop nobody took up (the job it was meant for ended first), so that the next job runs."""
    _requested.clear()
