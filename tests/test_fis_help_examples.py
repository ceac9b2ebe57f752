"""The `\\b` blank line (review s58): in rich help (a wide terminal) an `Example:` line was followed by two blank
lines before its command, the blank line click needs before `\\b` and the `\\b` line itself, which rich shows empty.
Each example now reads with one blank line; click's plain help (a narrow terminal) keeps the example's lines as
written, under its `Example:` line, and neither layout prints a control character."""

from __future__ import annotations

import pytest

from lowdim_cli.main import main

# (command, its example's heading, the first line of the example) as each docstring writes them
EXAMPLES = [
    ("train", "Examples, each after a line saying what it trains:", "# LiDB, 400 steps"),
    ("generate", "Example:", "lowdim generate -m tinyfaces -a me/adapter.safetensors -p \"a pencil sketch of a [V] "
                             "face\" --seed 1 --seed 2"),
    ("merge", "Example:", "lowdim merge -m sd15 -a me.safetensors -o me-sd15.safetensors --dtype fp16"),
    ("show", "Examples:", "lowdim show me/adapter.safetensors"),
    ("precompute", "Examples:", "lowdim precompute -m tinyfaces -i faces/ -o weights --steps 400 --batch-subjects 8"),
    ("eval", "Examples:", "lowdim eval images/ --references face.png --token sks --out results"),
]
RICH, PLAIN = 120, 80  # cli/help_values.py: rich's layout from 100 columns, click's plain one below


def help_lines(capsys, monkeypatch, command: str, columns: int) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("TERMINAL_WIDTH", raising=False)
    assert main([*command.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert "\b" not in text and "\v" not in text  # the docstring's markers never reach the terminal
    return [line.strip() for line in text.splitlines()]


def after_heading(lines: list[str], heading: str) -> list[str]:
    return lines[lines.index(heading) + 1:]


@pytest.mark.parametrize("command, heading, first", EXAMPLES)
def test_rich_help_puts_one_blank_line_between_example_and_command(capsys, monkeypatch, command, heading, first):
    after = after_heading(help_lines(capsys, monkeypatch, command, RICH), heading)

    assert after[:2] == ["", first]


@pytest.mark.parametrize("command, heading, first", EXAMPLES)
def test_plain_help_keeps_the_example_as_written(capsys, monkeypatch, command, heading, first):
    after = after_heading(help_lines(capsys, monkeypatch, command, PLAIN), heading)

    assert after[:2] == ["", first]  # not rewrapped into the heading's line, nor cut at 80 columns


def test_plain_help_keeps_each_train_example_on_its_own_line(capsys, monkeypatch):
    after = after_heading(help_lines(capsys, monkeypatch, "train", PLAIN), EXAMPLES[0][1])

    assert after[1:5] == ["# LiDB, 400 steps", "lowdim train -m tinyfaces -i face.png --out me-lidb",
                          "# LoRA DreamBooth", "lowdim train -m sd15 -i photos/ --space lora --set rank=4"]


def every_command() -> list[str]:
    """Each command and sub-command of the app, the installed plugins' included, as typed after `lowdim`."""
    import typer

    from lowdim_cli.main import app

    assert main(["--help"]) == 0  # main adds the plugins' commands (tinyfaces-identities) to the app first

    def walk(group, prefix: str) -> list[str]:  # typer's own click: a group is what lists commands
        names, context = [], group.context_class(group)
        for name in group.list_commands(context):
            names.append(f"{prefix}{name}")
            if hasattr(command := group.get_command(context, name), "list_commands"):
                names += walk(command, f"{prefix}{name} ")
        return names

    return walk(typer.main.get_command(app), "")


def test_no_rich_help_shows_two_blank_lines_in_a_row(capsys, monkeypatch):
    doubled = []
    for command in every_command():
        lines = help_lines(capsys, monkeypatch, command, RICH)
        if any(line == following == "" for line, following in zip(lines, lines[1:], strict=False)):
            doubled.append(command)
    assert doubled == []
