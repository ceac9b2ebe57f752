"""Plugin hooks. Each receives a ``register`` callback, so one plugin can add many things.

Built-in spaces and the SD backend register through these same hooks, so a third-party
plugin is a first-class citizen: anything lowdim ships, a plugin can ship too.

The ``Register*`` aliases name each callback's exact type. A plugin that annotates its hook's ``register``
with one (``def register_heads(register: RegisterHead) -> None``) has its calls checked: a type checker flags a
factory that takes or returns the wrong things. They are strings at run time, so importing them costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

import pluggy

if TYPE_CHECKING:  # torch and typer: loading plugins (for `lowdim --help`) imports neither
    import typer

    from lowdim.backends import Backend
    from lowdim.registry import HeadFactory, MetricFactory
    from lowdim.spaces.base import Space

hookspec = pluggy.HookspecMarker("lowdim")
hookimpl = pluggy.HookimplMarker("lowdim")

RegisterSpace: TypeAlias = "Callable[[type[Space]], None]"
RegisterBackend: TypeAlias = "Callable[[Backend], None]"
RegisterHead: TypeAlias = "Callable[[str, HeadFactory], None]"
RegisterMetric: TypeAlias = "Callable[[str, MetricFactory], None]"


@hookspec
def register_spaces(register: Callable[[type[Space]], None]) -> None:
    """Register weight spaces: ``register(SpaceSubclass)``, once per class; the class's ``name`` is its key.

    The class (not an instance): lowdim builds one per use with ``SpaceSubclass.build(config, registry)``.
    """


@hookspec
def register_backends(register: Callable[[Backend], None]) -> None:
    """Register model backends: ``register(backend)``, a ``lowdim.backends.Backend`` instance;
    ``backend.name`` and ``backend.aliases`` are keys (an SD1.x model registers a ``lowdim_sd.plugin.SDBackend``)."""


@hookspec
def register_heads(register: Callable[[str, HeadFactory], None]) -> None:
    """Register hypernetwork heads: ``register(name, factory)``.

    ``factory(config, space, layers)`` takes the run's ``lowdim.hyper.HyperConfig``, the ``Space`` the adapters
    live in and the ``Sequence[LayerSpec]`` of the layers it predicts, and returns the head: a ``torch.nn.Module``,
    in practice a ``lowdim.hyper.head.HyperHead``, whose call on a batch of images gives each layer's parameters.
    """


@hookspec
def register_metrics(register: Callable[[str, MetricFactory], None]) -> None:
    """Register evaluation metrics: ``register(name, factory)``.

    ``factory(**options)`` takes the metric's options as keywords (a metric class itself is such a factory) and
    returns a ``lowdim.metrics.Metric``: ``name``, ``column``, ``score(samples)``. It raises
    ``lowdim.metrics.MetricUnavailable`` when its model can't be had, so the other metrics still run.
    """


@hookspec
def register_commands(cli: typer.Typer) -> None:
    """Add commands to the ``lowdim`` Typer app: ``@cli.command()`` on your functions."""
