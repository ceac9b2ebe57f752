"""A machine without one of lowdim's first-party plugins is told what to install in the same words wherever it
meets the gap (review FG, findings 1 and 7): the root help's first steps, a plugin's command typed at the shell,
an adapter file whose space is the plugin's, and `--space vera`. The missing plugin is simulated as
tests/test_first_party_plugins_missing.py does: a registry of lowdim's own modules, and an app without the
plugin's commands."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import typer
from torch import nn

import lowdim
from lowdim_cli import main as cli_main
from lowdim_cli.main import app, main

pytest.importorskip("lowdim_tinyfaces")  # the first-party plugins, installed through their entry points
pytest.importorskip("lowdim_vera")

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"  # one folder per first-party plugin, named as its package
TINYFACES_WORDS = ("the plugin lowdim-tinyfaces, which is not installed (pip install lowdim-tinyfaces; from a "
                   "checkout, pip install -e plugins/lowdim-tinyfaces)")
VERA_WORDS = ("the plugin lowdim-vera, which is not installed (pip install lowdim-vera; from a checkout, pip install "
              "-e plugins/lowdim-vera)")


def without_plugins() -> lowdim.Registry:
    """What a machine where only lowdim is installed has: its own spaces, no entry point."""
    return lowdim.Registry.from_plugins(load_entry_points=False)


@pytest.fixture
def without_tinyfaces(app_as_it_was):
    """lowdim alone, and an app that never had the plugin's commands (an earlier test's main() added them)."""
    drop_command("tinyfaces-identities")
    with lowdim.use_registry(without_plugins()) as registry:
        yield registry


def drop_command(name: str) -> None:
    app.registered_commands[:] = [info for info in app.registered_commands if name not in cli_main._info_names(info)]


def one_line(text: str) -> str:
    return " ".join(text.replace("│", " ").split())


def root_help(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["--help"]) == 0
    return one_line(capsys.readouterr().out)


def test_the_root_help_names_the_plugin_its_first_steps_need_where_it_is_missing(without_tinyfaces, capsys,
                                                                                 monkeypatch):
    text = root_help(capsys, monkeypatch)
    assert (f"The model tinyfaces and `lowdim tinyfaces-identities` below come with {TINYFACES_WORDS}. Start here: "
            f"lowdim personalize -m tinyfaces") in text
    with lowdim.use_registry(lowdim.Registry.from_plugins(load_entry_points=True)):  # the plugin installed
        text = root_help(capsys, monkeypatch)
    assert "Start here: lowdim personalize -m tinyfaces" in text and "not installed" not in text


def test_a_first_party_command_without_its_plugin_is_one_line_naming_the_plugin(without_tinyfaces, capsys):
    assert main(["tinyfaces-identities", "-o", "faces", "--count", "1"]) == 2
    said = capsys.readouterr().err
    assert said == f"Error: unknown command 'tinyfaces-identities': it comes with {TINYFACES_WORDS}\n"
    # A typo of a real command keeps click's lines and its suggestion.
    assert main(["personalise"]) == 2
    said = capsys.readouterr().err
    assert "Error: No such command 'personalise'. Did you mean 'personalize'?" in said and "plugin" not in said


def test_with_plugins_switched_off_the_command_and_the_help_name_the_variable(without_tinyfaces, capsys,
                                                                               monkeypatch):
    monkeypatch.setenv("LOWDIM_NO_PLUGINS", "1")
    assert main(["tinyfaces-identities", "-o", "faces"]) == 2
    said = capsys.readouterr().err
    assert said.startswith("Error: unknown command 'tinyfaces-identities': it comes with the plugin lowdim-tinyfaces, "
                           "and LOWDIM_NO_PLUGINS is set") and "pip install" not in said
    assert "LOWDIM_NO_PLUGINS is set" in root_help(capsys, monkeypatch)


def test_a_loaded_plugin_whose_command_is_missing_is_not_said_to_be_uninstalled(without_tinyfaces, capsys):
    # Its register_commands raised (a warning said so): "pip install" would send the user the wrong way. Without
    # the plugin, the same app says to install it.
    assert main(["tinyfaces-identities"]) == 2
    assert TINYFACES_WORDS in capsys.readouterr().err
    registry = lowdim.Registry.from_plugins(load_entry_points=True)
    cli_main._commands_added_for.add(id(registry.manager))  # its commands were offered, and none kept
    with lowdim.use_registry(registry):
        assert main(["tinyfaces-identities"]) == 2
    said = capsys.readouterr().err
    assert "No such command 'tinyfaces-identities'" in said and "not installed" not in said


def installed_first_party_plugins() -> tuple[set[str], dict[str, str]]:
    """The first-party packages installed here, and command name -> package for every command their
    register_commands adds."""
    packages: set[str] = set()
    commands: dict[str, str] = {}
    for point in entry_points(group="lowdim"):
        package = point.dist.name if point.dist is not None else ""
        if not (PLUGINS / package).is_dir():
            continue
        packages.add(package)
        if (register := getattr(point.load(), "register_commands", None)) is not None:
            cli = typer.Typer()
            register(cli=cli)
            commands.update(dict.fromkeys(cli_main._command_names(cli), package))
    return packages, commands


def test_the_first_party_command_table_holds_every_command_the_installed_first_party_plugins_add():
    from lowdim_cli.main import FIRST_PARTY_COMMANDS

    installed, registered = installed_first_party_plugins()
    assert "tinyfaces-identities" in registered  # lowdim-tinyfaces is installed here: the check has something to see
    assert {name: package for name, package in FIRST_PARTY_COMMANDS.items() if package in installed} == registered
    assert all((PLUGINS / package).is_dir() for package in FIRST_PARTY_COMMANDS.values())


def vera_adapter(tmp_path) -> Path:
    model = nn.Sequential(nn.Linear(6, 5))
    lowdim.inject(model, lowdim.get_space("vera"), ["0"])
    return lowdim.save_adapter(tmp_path / "v.safetensors", model)


def test_a_file_of_a_first_party_space_gives_the_pip_words_that_space_vera_gives(tmp_path):
    from lowdim.space_packages import missing_space_words

    path = vera_adapter(tmp_path)
    with lowdim.use_registry(without_plugins()) as registry:
        with pytest.raises(lowdim.errors.LowdimError) as from_file:
            lowdim.read_adapter(path)
        with pytest.raises(lowdim.errors.ConfigError) as from_flag:
            registry.make_space("vera")
    assert str(from_file.value) == f"{path}: its space 'vera' comes with {VERA_WORDS}"
    assert str(from_flag.value) == f"unknown space 'vera': it comes with {VERA_WORDS}"
    # A third-party plugin's space keeps naming its package, which lowdim has no pip line for.
    assert missing_space_words("scalar", "lowdim-scalar", without_plugins()) == (
        "its space 'scalar' is not installed here (known: lidb, lora, stack, ti); install the plugin that provides "
        "it (package lowdim-scalar)")


def test_a_first_party_plugin_that_failed_to_load_is_not_called_uninstalled(monkeypatch):
    # pip install would be the wrong advice: the package is there, and `lowdim --version` says why it broke.
    from lowdim import plugins
    from lowdim.space_packages import absent_plugin_words, first_party_hint
    from lowdim_sd.registered_models import missing_plugin_words

    monkeypatch.delenv("LOWDIM_NO_PLUGINS", raising=False)
    monkeypatch.setattr(plugins, "failed_to_load", lambda: {"lowdim-tinyfaces": "ImportError: no module named x",
                                                           "lowdim-vera": "SyntaxError: bad"})
    said = absent_plugin_words("lowdim-tinyfaces")
    assert said == ("the plugin lowdim-tinyfaces, which is installed but failed to load (ImportError: no module named "
                    "x): fix or reinstall it (`lowdim --version` lists plugin errors)")
    assert missing_plugin_words("tinyfaces") == f"it comes with {said}"
    assert "installed but failed to load (SyntaxError: bad)" in first_party_hint("vera")
    assert "not installed" not in first_party_hint("vera")
