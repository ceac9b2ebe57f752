"""The `lowdim` script's first module: a Ctrl-C or SIGTERM while the commands still import (rich, typer, every
command module: the first tenth of a second or so, longer on a cold disk) is one line and status 130, as a later
stop is, not a KeyboardInterrupt traceback or a death by the signal with nothing said.

Only the standard library is imported here, so the handlers are in place before the slow imports start.
``lowdim_cli.errors.stop_on_signals`` replaces them as the command starts. Importing this module (or
``lowdim_cli.main``) installs nothing: only ``script`` does, so a program or a test keeps its own handling.
"""

from __future__ import annotations

import os
import signal

EARLY_LINE = b"Interrupted before the command started; nothing was written.\n"
INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C; SIGTERM's stop too


def early_stop(signum: int, frame: object) -> None:
    """Quit at once: only imports have run, so there is nothing to keep or clean up, and raising instead would
    leave a half-imported library to wrap the KeyboardInterrupt in errors of its own."""
    os.write(2, EARLY_LINE)
    os._exit(INTERRUPTED)


def stop_early_on_signals() -> None:
    """``early_stop`` for SIGTERM, and for SIGINT where Ctrl-C is Python's KeyboardInterrupt: a shell's background
    job ignores SIGINT and must go on ignoring it (``stop_on_signals`` keeps the same rule)."""
    signal.signal(signal.SIGTERM, early_stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, early_stop)


def script() -> None:
    """The `lowdim` console script: early handlers, then the commands' imports, then the command."""
    stop_early_on_signals()
    from lowdim_cli.main import script as run_command  # the slow imports a signal may land in

    run_command()
