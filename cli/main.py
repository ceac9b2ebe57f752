"""Entry point of the ``lowdim`` command: built-in commands, plugin commands, and error policy.

User mistakes (LowdimError) print one red line and exit 1, and so does running out of accelerator
memory, which is a sizing choice rather than a bug. Ctrl-C exits 130 from every command, printing
what the run kept and how to continue (``lowdim_sd.runs.Interrupted``). Anything else is a bug in
lowdim or a plugin and keeps its traceback. ``main`` holds that table; the lines it prints, and the `lowdim`
script's signal handling, are ``lowdim_cli.errors``'.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Annotated, Any, Protocol, cast

import typer

from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_cli import (
    bench_command,
    errors,
    eval_command,
    hyper_commands,
    info_commands,
    personalize_command,
    sd_commands,
    ui_command,
)
from lowdim_cli.console import err, user_text
from lowdim_cli.help_values import ValueWordsGroup, fit_help_to_terminal, typers_click
from lowdim_cli.version import show_version
from lowdim_sd import status_line

# Commands lowdim's own plugins add, by the distribution that brings each (lowdim.space_packages.FIRST_PARTY_SPACES
# is the same for spaces): without it, `lowdim NAME` says what to install rather than click's bare "No such command".
# tests/test_fiv_missing_plugin_words.py holds it to what the installed first-party plugins register.
FIRST_PARTY_COMMANDS = {"tinyfaces-identities": "lowdim-tinyfaces"}

# The command a newcomer wants first, whose summary sits ninth in the list of commands; both lines need START_PLUGIN.
START_HERE = ("Start here: lowdim personalize -m tinyfaces -i face.jpg -o me  (one face image to a model that draws "
              "it, offline in under a minute on a CPU; then the `lowdim generate` line it prints). No face at hand? "
              "`lowdim tinyfaces-identities -o faces --count 1 --split test` writes one of the 32x32 made-up faces "
              "tinyfaces knows (a photo of a real person comes out as one of them too): -i faces/id-00000.png.")
START_PLUGIN = "lowdim-tinyfaces"


class RootGroup(ValueWordsGroup):
    """`lowdim` itself: its help's first steps say first what to install when their plugin is missing, and a
    first-party plugin's command typed without that plugin says which to install, where click says only "No such
    command". Both are decided when asked, from the plugins' entry points: no torch for --help."""

    def get_command(self, ctx, cmd_name: str):
        command = super().get_command(ctx, cmd_name)
        plugin = FIRST_PARTY_COMMANDS.get(cmd_name)
        if command is None and plugin is not None and not ctx.resilient_parsing and \
                (words := _absent_plugin_words(plugin)):
            raise _command_line_error(f"unknown command '{cmd_name}': it comes with {words}")
        return command

    def format_help(self, ctx, formatter) -> None:
        self.epilog = start_here()
        super().format_help(ctx, formatter)


def start_here() -> str:
    """The root help's epilog: START_HERE, after a line naming its plugin where that is missing."""
    words = _absent_plugin_words(START_PLUGIN)
    return START_HERE if words is None else \
        f"The model tinyfaces and `lowdim tinyfaces-identities` below come with {words}. {START_HERE}"


def _absent_plugin_words(plugin: str) -> str | None:
    """'the plugin P, which is not installed (pip install P; ...)' where no plugin of distribution ``plugin`` is
    loaded; with LOWDIM_NO_PLUGINS set, that variable instead (P may well be installed). None when it is loaded."""
    from lowdim.space_packages import absent_plugin_words, loads_a_plugin_of

    return None if loads_a_plugin_of(plugin, _plugins_in_use()) else absent_plugin_words(plugin)


def _command_line_error(message: str) -> Exception:
    """One `Error:` line and status 2, as click's usage errors have, without their usage lines: the command line
    is fine, the command is not installed. A ClickException of the click typer runs on (its own copy from 0.25)."""
    error = typers_click().ClickException(message)
    error.exit_code = 2
    return error


app = typer.Typer(
    name="lowdim",
    help="Tiny, fast personalization of text-to-image models in low-dimensional weight spaces.",
    epilog=START_HERE,  # RootGroup adds what to install first where the plugin is missing
    no_args_is_help=True,
    # -h as pytest, pip and most tools take it; every command and group under the root inherits it (no command
    # uses -h for anything else: tests/test_help_review_eo.py)
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    cls=RootGroup,
    result_callback=lambda value, **options: None,  # a command's return value is no exit status (main())
)

if TYPE_CHECKING:
    import click
    import pluggy


class _UsageError(Protocol):
    """Click's ClickException, of typer's own copy of click or of click itself (two classes, one shape)."""

    exit_code: int

    def show(self) -> None: ...


# Typer >= 0.25 vendors click, so a core install may have no click at all: typer's own classes always,
# click's too where it is installed (typer < 0.25 raises those).
EXITS: tuple[type[typer.Exit] | type[click.exceptions.Exit], ...] = (typer.Exit,)
# Typer's copy of ClickException, under its public base (typer raises no bare TyperException).
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
        "--version", callback=show_version, is_eager=True,
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
    from lowdim.plugins import call_each

    manager = _plugins_in_use()
    if manager is not None and id(manager) not in _commands_added_for:
        _commands_added_for.add(id(manager))
        guard = _CommandGuard(app)
        call_each(manager, "register_commands", guard.before, on_success=guard.keep, on_failure=guard.take_back)


def _plugins_in_use() -> pluggy.PluginManager | None:
    """The plugins of the registry in use (one ``use_registry`` installed), else the installed ones."""
    from lowdim.plugins import installed_plugins
    from lowdim.registry import current_registry

    registry = current_registry()
    return registry.manager if registry is not None else installed_plugins()


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
        # Commands and groups, two kinds of registration, each list checked and pruned alike.
        registered: tuple[list[Any], list[Any]] = (self.app.registered_commands, self.app.registered_groups)
        for infos, mark in zip(registered, self.marks, strict=True):
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
        if info.name:
            return [info.name]
        if info.callback is None:  # typer would fail building the CLI: the plugin adding it is skipped instead
            raise ValueError("a command with neither a name nor a function")
        return [get_command_name(info.callback.__name__)]
    name = solve_typer_info_defaults(info).name
    return [name] if name else _command_names(info.typer_instance)


def _warn_command(plugin: str, what: str) -> None:
    from lowdim.plugins import PluginWarning
    from lowdim.registry import plugin_label

    warnings.warn(f"{plugin_label(plugin)} {what}", PluginWarning, stacklevel=3)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, as a script, exits with) the exit code."""
    warnings.showwarning = errors.show_warning
    try:
        _add_plugin_commands()
        errors.catch_interrupts(app)
        fit_help_to_terminal(app)
        # Messages name flags, not the library's parameters; a wait no bar shows gets a spinner on a terminal.
        with command_line(), status_line.shown_on(err):
            code = app(args=argv, prog_name="lowdim", standalone_mode=False)
        # Click returns a command's typer.Exit(code=N) instead of raising it: N is the shell's status (a command's own
        # return value never gets here: the app's result_callback drops it). Typer answers a Ctrl-C outside any
        # command (or in a sub-group's) with the bare code 130.
        if code == errors.INTERRUPTED:
            return errors.interrupted("")
        return code if isinstance(code, int) and not isinstance(code, bool) else 0
    except errors.Stopped as stopped:
        return errors.interrupted(str(stopped.interrupt))
    except ABORTS:
        return errors.interrupted("")
    except LowdimError as error:
        err.print(f"[bold red]Error:[/] {user_text(errors.launched_process() + str(error))}",
                  highlight=False)
        return 1
    except EXITS as done:
        return done.exit_code
    except USAGE_ERRORS as error:
        errors.keep_near_misses(error)
        usage = cast(_UsageError, error)  # a ClickException of either click
        usage.show()
        return usage.exit_code
    except Exception as error:
        hint = errors.one_line_for(error)
        if errors.a_stop_inside(error):  # a stop, and what its handling then hit (a full disk) said with it
            return errors.interrupted(f"interrupted, and then {hint}: what the stop was writing was not kept, and "
                                      "nothing half-written was left behind" if hint else "")
        if hint is None:
            errors.name_the_plugin(error)  # whom a user reports it to, when a plugin's code raised it
            raise  # a bug in lowdim or a plugin: its traceback
        err.print(f"[bold red]Error:[/] {user_text(errors.launched_process() + hint)}",
                  highlight=False)
        return 1


def script() -> None:
    errors.stop_on_signals()
    try:
        code = main()
    except KeyboardInterrupt:  # a second signal as main returned, after its line: the run already stopped
        code = errors.INTERRUPTED
    errors.exit_on_signals(code)
    sys.exit(code)


if __name__ == "__main__":
    script()
