"""A plugin's `register_commands` adds commands of its own and nothing else: a name lowdim's own command (or an
earlier plugin's) has is refused with one warning naming the plugin, and a hook that raises leaves none of
what it added, so an installed package cannot change what `lowdim train` does (review B6)."""

from __future__ import annotations

import typer
from test_plugins import plugin_module

import lowdim
from lowdim_cli.main import app, main


def hijacked_train(model: str = "x"):
    """A plugin's train."""
    print("hijacked")


def hello():
    """A plugin's new command."""
    print("hello from a plugin")


def with_commands(*modules) -> lowdim.Registry:
    return lowdim.Registry.from_plugins(["lowdim.spaces.builtin", *modules])


def run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def test_a_plugin_command_named_as_a_builtin_is_refused_and_the_builtin_stays(app_as_it_was, capsys):
    def register_commands(cli):
        cli.command(name="train")(hijacked_train)
        cli.command()(hello)

    with lowdim.use_registry(with_commands(plugin_module("hijacker", register_commands=register_commands))):
        code, said = run(capsys, "train", "--help")
        assert code == 0 and "hijacked" not in said and "--images" in said  # lowdim's own train
        assert said.count("Warning:") == 1
        assert ("Warning: plugin 'hijacker' adds a command 'train', which lowdim's own command is; the plugin's is "
                "ignored: give it a name of its own") in said
        assert run(capsys, "hello") == (0, "hello from a plugin")  # its other command is added


def test_a_command_an_earlier_plugin_added_is_refused_for_the_later_one(app_as_it_was, capsys):
    first = plugin_module("first", register_commands=lambda cli: cli.command()(hello))
    second = plugin_module("second", register_commands=lambda cli: cli.command(name="hello")(hijacked_train))
    with lowdim.use_registry(with_commands(first, second)):
        code, said = run(capsys, "hello")
    assert code == 0 and said.startswith("hello from a plugin")  # the first plugin's command, then the warning
    assert "Warning: plugin 'second' adds a command 'hello', which plugin 'first' added" in said


def test_a_register_commands_hook_that_raises_leaves_none_of_its_commands(app_as_it_was, capsys):
    def halfway(cli):
        cli.command()(hello)
        cli.add_typer(typer.Typer(), name="plugin-group")
        raise RuntimeError("boom")

    before = len(app.registered_commands), len(app.registered_groups)
    with lowdim.use_registry(with_commands(plugin_module("halfway", register_commands=halfway))):
        code, said = run(capsys, "hello")
    assert code == 2 and "No such command 'hello'" in said
    assert "plugin 'halfway' raised in register_commands and was skipped: RuntimeError: boom" in said
    assert (len(app.registered_commands), len(app.registered_groups)) == before


def test_a_plugin_cannot_replace_the_apps_own_options(app_as_it_was, capsys):
    def root():
        """A plugin's root callback."""

    rooter = plugin_module("rooter", register_commands=lambda cli: cli.callback()(root))
    with lowdim.use_registry(with_commands(rooter)):
        code, said = run(capsys, "--version")
    assert code == 0 and said.startswith("lowdim ")  # --version still answers
    assert "Warning: plugin 'rooter' sets the options of `lowdim` itself" in said


def test_a_plugin_commands_exit_code_is_the_shells(app_as_it_was, capsys):
    """Review CQ 1: click hands back a typer.Exit(code=N) instead of raising it; a check that fails must not tell
    the shell or CI it passed. A command's other return value is no exit code."""
    def check(fail: bool = False) -> None:
        """A plugin's check: exit 3 when it fails."""
        if fail:
            raise typer.Exit(code=3)

    def answer() -> str:
        """A plugin's command that returns a value."""
        return "a value, not a status"

    def count() -> int:
        """A plugin's command that returns a number (review CU 1): still no status."""
        return 5

    def register_commands(cli):
        cli.command()(check)
        cli.command()(answer)
        cli.command()(count)
        group = typer.Typer()
        group.command("inner")(count)
        cli.add_typer(group, name="grouped")

    with lowdim.use_registry(with_commands(plugin_module("checker", register_commands=register_commands))):
        assert run(capsys, "check", "--fail")[0] == 3
        assert run(capsys, "check")[0] == 0
        assert run(capsys, "answer")[0] == 0
        assert run(capsys, "count")[0] == 0 and run(capsys, "grouped", "inner")[0] == 0
