"""The one progress bar of lowdim and its listener: rich's bar on a terminal or in a notebook; on the default console
when it is a file (``lowdim train ... 2> log``, nohup, a CI log), a plain line now and then; and ``listen``/``report``,
which tell a caller (the web UI's progress) every step and stage, whether or not a bar is drawn.

Callers name them ``runs.progress``, ``runs.listen`` and ``runs.report``. The default console is ``runs.bar_console``,
which ``runs.progress`` hands to each bar it starts, so a test or a caller that replaces ``runs.bar_console`` reaches
the bars too; this module imports nothing of ``runs``.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from lowdim.scoped import scoped

# Seconds between two plain progress lines in a log: a 2-hour run writes about 120, never one per step, and a run
# shorter than this none at all (a failed command's captured stderr stays its one line).
LOG_EVERY = 60.0

# A listener hears (label, done, total) from every bar and every stage, whether or not a terminal bar
# is drawn: a context variable, so the web UI's job thread hears its own run and no other.
_LISTENER: contextvars.ContextVar[Callable[[str, int, int], None] | None] = contextvars.ContextVar(
    "lowdim_progress_listener", default=None)


@contextlib.contextmanager
def listen(callback: Callable[[str, int, int], None]) -> Iterator[None]:
    """Call ``callback(label, done, total)`` on every progress step and stage start within the block."""
    with scoped(_LISTENER, callback):
        yield


def report(label: str, done: int, total: int) -> None:
    """Tell the listener, if any, that ``label`` is at ``done`` of ``total`` (a stage starting: 0 of 1)."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(label, done, total)


# How a bar moves: advance(value=None, steps=1, label=None).
Advance = Callable[..., None]


@contextlib.contextmanager
def progress(total: int, label: str = "training", start: int = 0, enabled: bool = True, loss: bool = True,
             transient: bool = False, console: Any = None, *,
             default_console: Callable[[], Any]) -> Iterator[Advance]:
    """The one rich progress bar of lowdim: steps done of ``total``, elapsed and remaining time.

    ``advance(value=None, steps=1, label=None)`` moves it; with ``loss`` it also shows the last loss
    and the speed; ``label`` renames the bar (``steps=0``: only that, e.g. the task starting now).
    Disabled, it draws nothing, and the listener still hears each step; so does a bar on ``default_console()``
    (``runs.bar_console()``, stderr: the default) or a ``transient`` one when the console is neither a terminal nor
    a notebook, so a log holds no bar frames, and a failed command's stderr only its one line; and so does any bar
    in a notebook without ipywidgets, which rich needs to draw one there (it would only warn). A bar on the default
    console that is neither transient nor disabled writes there instead at most one plain line per ``LOG_EVERY``
    seconds, none in the first (see ``LogLines``).
    """
    heard = _heard_steps(label, start, total)
    # A print while the bar is drawn goes above it on a terminal; a piped stdout keeps it, as data.
    redirect = console is not None or getattr(sys.stdout, "isatty", bool)()
    logs = enabled and console is None and not transient  # the default console gets plain lines off a terminal
    live_only, console = transient or console is None, console or default_console()
    if not _shown(console, enabled, live_only):
        lines = LogLines(console, label, start, total, loss) if logs and not console.is_jupyter else None
        yield _unseen_advance(heard, lines)
        return
    with _rich_bar(console, label, start, total, loss, transient, redirect, heard) as advance:
        yield advance


def _heard_steps(label: str, start: int, total: int) -> Callable[[int, str | None], None]:
    """What tells the listener each move of a bar: ``heard(steps, new_label)``, counted from ``start``."""
    heard_label, heard_done = label, start

    def heard(steps: int, new_label: str | None) -> None:
        nonlocal heard_label, heard_done
        heard_done += steps
        heard_label = new_label or heard_label
        report(heard_label, heard_done, total)
    return heard


def _shown(console: Any, enabled: bool, live_only: bool) -> bool:
    """Whether a bar is drawn on ``console``: one that leaves no log of frames (``live_only``) only on a terminal or
    in a notebook, and in a notebook only with ipywidgets."""
    if enabled and live_only:  # off a terminal a bar leaves its last frame (a transient one an empty line)
        enabled = console.is_terminal or console.is_jupyter
    if enabled and console.is_jupyter:  # rich's notebook path, whatever is_terminal says
        enabled = importlib.util.find_spec("ipywidgets") is not None
    return enabled


def _unseen_advance(heard: Callable[[int, str | None], None], lines: LogLines | None) -> Advance:
    """A bar that draws nothing: the listener hears each step, and a log gets its plain ``lines`` if any."""
    def unseen(value: float | None = None, steps: int = 1, label: str | None = None) -> None:
        heard(steps, label)
        if lines is not None:
            lines.advance(value, steps, label)
    return unseen


@contextlib.contextmanager
def _rich_bar(console: Any, label: str, start: int, total: int, loss: bool, transient: bool, redirect: bool,
              heard: Callable[[int, str | None], None]) -> Iterator[Advance]:
    """Rich's bar on ``console``, live for the block; each move also told to the listener."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    extra = [TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]}")] if loss else []
    # markup=False: the label is user text (an identity's folder, a path), shown as given, never read as markup
    columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), *extra,
               TimeElapsedColumn(), TimeRemainingColumn()]
    with live(Progress(*columns, transient=transient, console=console, redirect_stdout=redirect)) as bar:
        task = bar.add_task(label, total=total, completed=start, loss="-", speed="")
        started, done = time.perf_counter(), 0

        def advance(value: float | None = None, steps: int = 1, label: str | None = None) -> None:
            nonlocal done
            done += steps
            shown = "-" if value is None else f"{value:.4f}"
            bar.update(task, advance=steps, loss=shown, speed=speed(done, time.perf_counter() - started),
                       **({"description": label} if label else {}))
            heard(steps, label)

        yield advance


def speed(done: int, seconds: float) -> str:
    """``done`` steps in ``seconds`` as a bar shows it: ``3.10 it/s``, or ``2.10 s/it`` when slower than one a
    second ('' before the first step)."""
    rate = done / max(seconds, 1e-9)
    return "" if not done else f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.2f} s/it"


def duration(seconds: float) -> str:
    """``9m48s``, ``1h05m``, ``42s``: a time left as a log line says it."""
    whole = round(seconds)
    hours, minutes, rest = whole // 3600, whole // 60 % 60, whole % 60
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


class LogLines:
    """A bar's plain lines on a console that is a file: ``training: step 120/400 (30%), loss 0.1234, 2.10 s/it,
    9m48s left`` (loss and speed only for a bar that shows loss), at most one per ``LOG_EVERY`` seconds and none
    before the first ``LOG_EVERY`` has passed. Plain text, the label as given: a log reader reads no markup."""

    def __init__(self, console: Any, label: str, start: int, total: int, loss: bool) -> None:
        self.console, self.label, self.start, self.total, self.loss = console, label, start, total, loss
        self.done = 0  # this run's own steps: its speed leaves out those of a resumed run's earlier runs
        self.began = self.written = time.perf_counter()

    def advance(self, value: float | None, steps: int, label: str | None) -> None:
        self.done += steps
        self.label = label or self.label
        now = time.perf_counter()
        if now - self.written >= LOG_EVERY:
            self.written = now
            # A line is a courtesy: a log that went away (`2>&1 | head -1`, a closed file) never stops the run.
            with contextlib.suppress(OSError, ValueError):
                self.console.file.write(self.line(value, now - self.began) + "\n")
                self.console.file.flush()  # a log read with `tail -f` sees each line as it is written

    def line(self, value: float | None, seconds: float) -> str:
        at = self.start + self.done
        parts = [f"{self.label}: step {at}/{self.total} ({100 * at // max(self.total, 1)}%)"]
        if self.loss:
            parts += [f"loss {value:.4f}"] if value is not None else []
            parts += [speed(self.done, seconds)] if self.done else []
        if self.done:
            parts.append(f"{duration(max(self.total - at, 0) * seconds / self.done)} left")
        return ", ".join(parts)


@contextlib.contextmanager
def live(bar: Any) -> Iterator[Any]:
    """Start and stop the rich ``Progress`` ``bar``. In a notebook also draw its last frame as it stops (rich draws
    none there then, so a finished bar would show an earlier step) and keep out of the cell the empty output that
    rich's stop writes there (Textualize/rich#3211), by making the console quiet for the stop alone."""
    console = bar.console
    if not console.is_jupyter:
        with bar:
            yield bar
        return
    quiet = console.quiet
    try:
        with bar:
            try:
                yield bar
            finally:
                bar.refresh()
                console.quiet = True
    finally:
        console.quiet = quiet
