"""A command's first seconds: importing torch and the libraries its work needs, before it reads or writes
anything. On a terminal a spinner says so; a Ctrl-C (or SIGTERM) there prints the line of a stop during the
commands' own imports (``lowdim_cli.entry``), which is as true here, instead of the generic one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from lowdim_cli import errors
from lowdim_cli.entry import EARLY_LINE
from lowdim_sd import status_line

STARTUP_NOTE = EARLY_LINE.decode().strip()  # "Interrupted before the command started; nothing was written."


@contextlib.contextmanager
def importing_libraries() -> Iterator[None]:
    """Around a command's imports of torch and the rest (seconds on a cold disk or a busy machine)."""
    with status_line.saying("starting: importing torch"):
        try:
            yield
        except KeyboardInterrupt as stop:
            raise KeyboardInterrupt(STARTUP_NOTE) from stop
        except Exception as error:
            if errors.a_stop_inside(error):  # a library that wrapped the stop in an ImportError of its own
                raise KeyboardInterrupt(STARTUP_NOTE) from error
            raise
