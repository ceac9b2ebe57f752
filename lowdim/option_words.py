"""How a message names an option: by its flag when the ``lowdim`` command runs (``--steps``), by its Python
parameter when a program calls the library (``TrainConfig(steps=...)``), so each reader is told what they
typed. The checks behind both are the same code; only the words differ."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from lowdim.scoped import scoped

_ON_THE_COMMAND_LINE = contextvars.ContextVar("lowdim_on_the_command_line", default=False)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Messages raised inside name flags: the CLI runs each command inside this."""
    with scoped(_ON_THE_COMMAND_LINE, True):
        yield


def on_the_command_line() -> bool:
    """Whether the running code was called by the ``lowdim`` command (its thread, or one it copied its
    context to)."""
    return _ON_THE_COMMAND_LINE.get()


def option(field: str, owner: str, flag: str | None = None) -> str:
    """The option's name for this reader: ``flag`` (by default ``--`` and the field with dashes) on the command
    line, ``owner(field=...)`` from Python, where ``owner`` is the class or function that takes it."""
    if on_the_command_line():
        return flag or "--" + field.replace("_", "-")
    return f"{owner}({field}=...)"


def either(cli_words: str, api_words: str) -> str:
    """One of two wordings of a hint, for the reader at hand (a flag to leave out against a field to set)."""
    return cli_words if on_the_command_line() else api_words


class Wording:
    """A hint worded for its reader each time a message is made with it (``either``): the
    CLI's words under the ``lowdim`` command, a Python caller's otherwise. For constants other modules put in
    their f-strings, so each message is worded when it is raised, not when the module was imported."""

    def __init__(self, cli: str, api: str) -> None:
        self.cli, self.api = cli, api

    def __str__(self) -> str:
        return either(self.cli, self.api)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"Wording({self.cli!r}, {self.api!r})"


def counted(n: int, noun: str, *, grouped: bool = False, plural: str | None = None) -> str:
    """``n`` and the noun in the number it needs ("1 layer", "3 layers", "0 layers"), so a message never says
    "1 layer(s)". ``grouped`` writes thousands separators ("12,800 values"); ``plural`` is for a noun that does
    not take an "s" ("identity" -> "identities", "batch" -> "batches")."""
    number = f"{n:,}" if grouped else str(n)
    return f"{number} {noun if n == 1 else plural or noun + 's'}"
