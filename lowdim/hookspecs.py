"""Plugin hooks. Each receives a ``register`` callback, so one plugin can add many things.

Built-in spaces and the SD backend register through these same hooks, so a third-party
plugin is a first-class citizen: anything lowdim ships, a plugin can ship too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("lowdim")
hookimpl = pluggy.HookimplMarker("lowdim")


@hookspec
def register_spaces(register: Callable[[type], None]) -> None:
    """Register weight spaces: ``register(SpaceSubclass)``; the class's ``name`` is its key."""


@hookspec
def register_backends(register: Callable[[Any], None]) -> None:
    """Register model backends: ``register(backend)``; ``backend.name`` and ``backend.aliases`` are keys."""


@hookspec
def register_heads(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register hypernetwork heads: ``register(name, factory)``."""


@hookspec
def register_metrics(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register evaluation metrics: ``register(name, factory)``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``lowdim`` Typer app: ``@cli.command()`` on your functions."""
