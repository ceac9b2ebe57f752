"""A spinner naming what a run waits on where no bar shows it (importing torch, loading the model, personalize's
stages before its finetune), so a first run is not a blank terminal for its first seconds.

It follows the bars' rules (``lowdim_sd.runs.progress``): on stderr, on a terminal only, gone once done
(transient), never in a log. ``saying`` blocks draw only inside ``shown_on`` (the ``lowdim`` command opens one
for every command; ``personalize(progress=True)`` opens one from Python), in the main thread of the main process,
and never while another live display (a bar) holds the terminal. Nothing heavy is imported here: the CLI says
"starting" with it before torch is imported.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from lowdim.scoped import scoped

# The console ``saying`` draws on, for the run in this context; None: draw nothing.
_CONSOLE: contextvars.ContextVar[Any] = contextvars.ContextVar("lowdim_status_console", default=None)


@contextlib.contextmanager
def shown_on(console: Any) -> Iterator[None]:
    """Within the block, ``saying`` draws on the rich ``console`` (None: nowhere)."""
    with scoped(_CONSOLE, console):
        yield


def shown_for(progress: bool) -> contextlib.AbstractContextManager[None]:
    """As a run with bars on or off draws: with ``progress``, on the console already chosen (the CLI's) or else
    the bars' own; without, nowhere."""
    if not progress:
        return shown_on(None)
    if _CONSOLE.get() is not None:
        return contextlib.nullcontext()
    from lowdim_sd import runs

    return shown_on(runs.bar_console())


def showing_progress() -> bool:
    """Whether the run in this context shows its progress: inside ``shown_on`` a console, as the ``lowdim``
    command and ``shown_for(True)`` open (``shown_for(False)``: not). For a stage drawing a bar that its caller
    has no ``progress`` argument to hand down (personalize's preview)."""
    return _CONSOLE.get() is not None


@contextlib.contextmanager
def saying(text: str) -> Iterator[None]:
    """A spinner and ``text`` on one line of the terminal for the block, erased as it ends (or is stopped)."""
    live = _started(text)
    try:
        yield
    finally:
        if live is not None:
            live.stop()


def _started(text: str) -> Any:
    console = _CONSOLE.get()
    if console is None or not _may_draw(console):
        return None
    from rich.errors import LiveError
    from rich.live import Live
    from rich.spinner import Spinner
    from rich.text import Text

    # A print to a piped stdout stays there, as data (runs.progress does the same).
    live = Live(Spinner("dots", Text(text)), console=console, transient=True, refresh_per_second=8,
                redirect_stdout=getattr(sys.stdout, "isatty", bool)())
    try:
        live.start(refresh=True)
    except LiveError:  # rich before 14.1: another live display on this console
        return None
    return live


def _may_draw(console: Any) -> bool:
    from rich.file_proxy import FileProxy

    return (console.is_terminal and not console.is_jupyter
            and threading.current_thread() is threading.main_thread()  # not a server's job threads (lowdim ui)
            and os.environ.get("RANK", "0") == "0"  # one line for a launcher's processes, not one each
            # a live display (a bar, another spinner) already holds the terminal: rich moved stderr under it
            and not isinstance(sys.stderr, FileProxy) and not isinstance(sys.stdout, FileProxy))
