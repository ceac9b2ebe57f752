"""What --help shows after each option: the kind of value to type, and nothing after a flag.

Typer 0.27 and later write Python's names there (``<str>``, ``<list[str]>``), and 0.29 ``<bool>`` after
flags such as ``--overwrite``, which take no value, so a reader could type ``--overwrite true``. Each option
without a metavar of its own gets click's words instead: TEXT, INTEGER, FLOAT, PATH; a flag gets none. An
argument named by its own metavar (FILE) gets no ``<path>`` beside it.
Options with choices keep typer's list of them. Typer describes an option's type in two ways across the
versions pyproject allows (a ``type_descriptor`` from 0.29, a click type before), so both are read.

And the layout itself: rich's table from 100 columns, click's plain list on a narrower terminal
(fit_help_to_terminal).
"""

from __future__ import annotations

import importlib
import os
import shutil
import textwrap
import typing
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption

WORDS = {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH"}
# The names of click's types (typer 0.27 and 0.28 vendor click with names of their own: str, int).
CLICK_WORDS = {"text": "TEXT", "str": "TEXT", "integer": "INTEGER", "int": "INTEGER", "float": "FLOAT", "path": "PATH"}


def value_word(annotation: Any) -> str | None:
    """The word for an option's type, or None where typer's own display says more (choices, tuples)."""
    if typing.get_origin(annotation) in (typing.Union, UnionType):  # `X | None`
        kinds = [kind for kind in typing.get_args(annotation) if kind is not NoneType]
        if len(kinds) != 1:
            return None
        annotation = kinds[0]
    if typing.get_origin(annotation) is list:  # a repeatable option: the word of one value
        return value_word(typing.get_args(annotation)[0])
    return WORDS.get(annotation)


def option_word(param) -> str | None:
    """The word for a value option of any typer version, or None to keep typer's own display."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None:  # typer >= 0.29
        return None if descriptor.is_choice else value_word(descriptor.annotation)
    name = getattr(getattr(param, "type", None), "name", None)  # typer <= 0.28: a click type
    return CLICK_WORDS.get(name) if isinstance(name, str) else None


def _no_type(ctx) -> None:
    return None


def name_values(command, ctx) -> None:
    """Give the options of ``command``, and of every command under it, their value words (once each)."""
    help_option = command.get_help_option(ctx) if hasattr(command, "get_help_option") else None
    for param in [*getattr(command, "params", []), *([help_option] if help_option is not None else [])]:
        if isinstance(param, TyperArgument):
            _usage_without_braces(param)
        if isinstance(param, TyperArgument) and param.metavar is not None:
            # Its own name (FILE, ADAPTER) already says what to type; typer 0.29 would add <path> beside it.
            param.display_type_rich = _no_type  # type: ignore[method-assign]  # typer's method, on this one only
        if not isinstance(param, TyperOption) or param.metavar is not None:
            continue
        param.metavar = "" if param.is_flag else option_word(param)
    if getattr(ctx.find_root().command, "rich_markup_mode", "rich") is None:
        _plain_brackets(command)
    for sub in getattr(command, "commands", {}).values():
        name_values(sub, ctx)


def _usage_without_braces(argument: TyperArgument) -> None:
    """Typer 0.29 writes a required argument as `{FILE}` in the usage line, where braces read as "one of these
    choices": the bare name, as click and the option list write it (an optional one keeps its `[FILE]`)."""
    typers_name = getattr(argument, "_usage_display_name", None)
    if typers_name is None or getattr(typers_name, "without_braces", False):  # before 0.29, or done already
        return

    def usage_name() -> str:
        name = typers_name()
        return name[1:].replace("}", "", 1) if name.startswith("{") else name

    usage_name.without_braces = True  # type: ignore[attr-defined]  # a mark: wrapped once, however often called
    argument._usage_display_name = usage_name  # type: ignore[method-assign]  # typer's method, on this one only


def _plain_brackets(command) -> None:
    """Click's plain layout prints help as written, so a bracket escaped for rich (`'lowdim\\[ui]'`) would
    keep its backslash, which a reader copies and pip rejects."""
    for owner in [command, *getattr(command, "params", [])]:
        if getattr(owner, "help", None):
            owner.help = owner.help.replace("\\[", "[")


class ValueWordsGroup(TyperGroup):
    """The CLI's root group: every command it hands out, and its own help, show value words."""

    def get_command(self, ctx, cmd_name: str):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            name_values(command, ctx)
        return command

    def format_help(self, ctx, formatter) -> None:
        name_values(self, ctx)
        super().format_help(ctx, formatter)


# An example block in a command's docstring opens with a `\v\b` line right under its heading: click's plain
# help splits lines at the `\v` too, so it sees the blank line and the `\b` line that keeps the block's lines as
# written, and rich's, which drops both characters, shows one blank line where `\n\n\b` showed two.

# Below this many columns rich's option table cuts long option names ("--gradient-checkpoi…") and squeezes the
# help into a narrow strip, where click's plain layout (the names, then the help beside or under them) fits.
RICH_HELP_MIN_COLUMNS = 100


def fit_help_to_terminal(app, columns: int | None = None) -> None:
    """Give ``app`` and its sub-apps rich's help layout, or click's plain one on a terminal narrower than rich's
    table needs (the width typer's rich console would use: TERMINAL_WIDTH, else COLUMNS or the terminal's).
    Set on every run, as tests run the one app at several widths."""
    if columns is None:
        columns = int(os.environ.get("TERMINAL_WIDTH") or shutil.get_terminal_size().columns)
    if columns < RICH_HELP_MIN_COLUMNS:
        _wrap_plain_help_at_spaces_only()
    app.rich_markup_mode = "rich" if columns >= RICH_HELP_MIN_COLUMNS else None
    for group in getattr(app, "registered_groups", ()):
        fit_help_to_terminal(group.typer_instance, columns)


def typers_click() -> Any:
    """The click module typer runs on: its own copy from typer 0.25 (a core install may have no click), else click."""
    import typer.core

    return getattr(typer.core, "_click", None) or importlib.import_module("click")


def _wrap_plain_help_at_spaces_only() -> None:
    """click wraps its plain help with textwrap's default, which also breaks at hyphens: `--batch-subjects` and
    a method such as `ours-described-styles` were split over two lines, and copied so; and inside a word longer
    than the line (`tinyfaces-identity,tinyfaces-image,t` / `inyfaces-style`), which now overflows instead. Its
    wrapper class is looked up at each wrap, so a subclass that keeps every word whole takes its place (a click
    without that module keeps its own)."""
    click = typers_click()
    try:
        module: Any = importlib.import_module(f"{click.__name__}._textwrap")  # whichever click typer uses
    except ImportError:
        return
    if getattr(module.TextWrapper, "keeps_hyphenated_words", False):
        return

    class WholeWords(module.TextWrapper):  # click's subclass of textwrap's
        keeps_hyphenated_words = True

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **{**kwargs, "break_on_hyphens": False, "break_long_words": False})

        def _handle_long_word(self, reversed_chunks, cur_line, cur_len, width) -> None:
            # click's own cuts a long word wherever the line ends, whatever break_long_words says; textwrap's
            # keeps it whole, on a line of its own
            textwrap.TextWrapper._handle_long_word(self, reversed_chunks, cur_line, cur_len, width)

    module.TextWrapper = WholeWords
