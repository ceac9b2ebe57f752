"""--help names the value each option takes in words (TEXT, INTEGER, PATH...) and none after a flag."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import click
import pytest
import typer.main

from lowdim_cli.help_values import option_word, value_word
from lowdim_cli.main import _add_plugin_commands, app, main


def every_command() -> list[list[str]]:
    _add_plugin_commands()
    found = []

    def walk(command, path: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            found.append([*path, name])
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def help_of(capsys, monkeypatch, *path: str) -> str:
    monkeypatch.setenv("COLUMNS", "200")  # one row per option, so an option's line holds its value word
    assert main([*path, "--help"]) == 0
    return capsys.readouterr().out


def option_row(text: str, option: str) -> str:
    return next(line for line in text.splitlines() if re.search(rf"│\s+(\*\s+)?{option}\s", line))


def test_no_help_shows_pythons_type_names_after_an_option(capsys, monkeypatch):
    commands = every_command()
    assert ["personalize"] in commands and ["bench", "quality"] in commands
    for path in [[], *commands]:
        options = help_of(capsys, monkeypatch, *path).split("Options")[-1]
        assert not re.search(r"<(str|int|float|bool)>|list\[", options), path


def test_an_argument_named_by_its_own_word_shows_no_python_type_beside_it(capsys, monkeypatch):
    shown = 0
    for path in every_command():
        text = help_of(capsys, monkeypatch, *path)
        if "Arguments" not in text:
            continue
        arguments = text.split("Arguments")[1].split("╰")[0]
        assert not re.search(r"<(path|str|int|float)>", arguments), path
        shown += 1
    assert shown >= 2  # show FILE and export ADAPTER at least
    assert option_row(help_of(capsys, monkeypatch, "show"), "FILE").split("FILE")[1].split()[0] == "A"


def test_a_flag_shows_no_value_and_a_value_option_shows_its_kind(capsys, monkeypatch):
    text = help_of(capsys, monkeypatch, "personalize")
    assert option_row(text, "--overwrite").split("--overwrite")[1].split()[0] == "Replace"
    assert option_row(text, "--steps").split("--steps")[1].split()[0] == "INTEGER"
    assert option_row(text, "--lr").split("--lr")[1].split()[0] == "FLOAT"
    assert option_row(text, "--help").split("--help")[1].split()[:2] == ["-h", "Show"]  # -h, no value word
    quality = help_of(capsys, monkeypatch, "bench", "quality")  # a sub-group's command too
    assert re.search(r"--identities\s+-i\s+PATH\s", option_row(quality, "--identities"))  # │ --identities -i PATH


def test_a_flag_that_is_off_unless_given_offers_no_form_that_turns_it_off():
    # `--no-overwrite` for what is already off only widens every help table; eval's and encoder-features' --crop
    # keep their --no-crop, which a FaceNotFound line names for every command that crops.
    root = typer.main.get_command(app)
    offers = []

    def walk(command, path: list[str]) -> None:
        for param in getattr(command, "params", []):
            if getattr(param, "is_flag", False) and param.default is False and param.secondary_opts:
                offers.append((" ".join(path), param.opts[0], param.secondary_opts[0]))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    _add_plugin_commands()
    walk(root, [])
    assert sorted(offers) == [("encoder-features", "--crop", "--no-crop"), ("eval", "--crop", "--no-crop")]


@pytest.mark.parametrize(("annotation", "word"), [
    (str, "TEXT"), (int, "INTEGER"), (float, "FLOAT"), (Path, "PATH"), (list[str], "TEXT"),
    (int | None, "INTEGER"), (list[int] | None, "INTEGER"), (Path | None, "PATH"),
    (Literal["a", "b"], None), (int | str, None), (tuple[int, int], None),
])
def test_value_words(annotation, word):
    assert value_word(annotation) == word


@pytest.mark.parametrize(("kind", "word"), [
    (str, "TEXT"), (int, "INTEGER"), (float, "FLOAT"), (click.Path(), "PATH"), (click.Choice(["a", "b"]), None),
])
def test_an_option_described_by_a_click_type_gets_its_word_too(kind, word):
    """Typer 0.28 and earlier describe an option by a click type, not a type descriptor: --help must not
    fail there (it once did, with an AttributeError) and gives the same words."""
    assert option_word(click.Option(["--value"], type=kind)) == word


def test_a_narrow_terminal_gets_every_option_name_whole(capsys, monkeypatch):
    for path in [[], *every_command()]:
        monkeypatch.setenv("COLUMNS", "80")
        assert main([*path, "--help"]) == 0, path
        text = capsys.readouterr().out
        assert "…" not in text and "│" not in text, path  # rich's table cut names here ("--gradient-checkpoi…")
        # wider only where a line would have to be cut inside a word or a command: a value wider than the column
        # (`tinyfaces-identity,tinyfaces-image,tinyfaces-style`), an example kept on its line to be copied
        wide = [line for line in text.splitlines() if len(line) > 80 and len(line.split()) > 1
                and not line.lstrip().startswith(("lowdim ", "accelerate "))]
        assert not wide, path
        assert not re.search(r"\w-$", text, re.M), path  # wrapped at spaces only: `--batch-subjects` stays whole
        if path == ["personalize"]:
            assert re.search(r"^  --gradient-checkpointing +Recompute activations", text, re.M)
    assert "│" in help_of(capsys, monkeypatch, "personalize")  # at 200 columns: rich's table again


@pytest.mark.parametrize("columns", ["80", "200"])
def test_rich_escapes_never_reach_a_reader_in_either_layout(capsys, monkeypatch, columns):
    """A bracket escaped for rich (`lowdim\\[ui]`) is a plain bracket in click's layout too: pip rejects the
    backslash a reader would copy."""
    for path in [[], *every_command()]:
        monkeypatch.setenv("COLUMNS", columns)
        assert main([*path, "--help"]) == 0, path
        text = capsys.readouterr().out
        assert "\\[" not in text, path
        if path == ["ui"]:
            assert "pip install 'lowdim[ui]'" in " ".join(text.split())
