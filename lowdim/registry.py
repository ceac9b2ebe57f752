"""The registry: every space, backend, head and metric that the plugins registered, by name.

``get_registry()`` builds it once per process from installed plugins. Tests build their own
with ``Registry.from_plugins([...])`` and can install it with ``use_registry``.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from lowdim.errors import ConfigError, LowdimError, PluginError
from lowdim.option_words import counted
from lowdim.plugin_calling import package_suffix
from lowdim.plugin_calling import plugin_label as plugin_label  # re-exported: cli, lowdim_sd, space_packages
from lowdim.plugins import (
    BUILTIN_MODULES,
    NO_PLUGINS_NOTE,
    PluginWarning,
    build_plugin_manager,
    call_each,
    installed_plugins,
    is_lowdims_own,
    no_plugins_space_note,
    plugins_disabled,
)

if TYPE_CHECKING:  # they import torch; the CLI reads this module to list plugin commands without it
    from torch import nn

    from lowdim.backends import Backend
    from lowdim.hyper.config import HyperConfig
    from lowdim.metrics import Metric
    from lowdim.spaces.base import LayerSpec, Space, SpaceConfig

    # What register_heads and register_metrics register: a head's factory (its result is a HyperHead, see
    # lowdim.hyper.head), and a metric's, which takes the metric's options as keywords.
    HeadFactory = Callable[[HyperConfig, Space, Sequence[LayerSpec]], nn.Module]
    MetricFactory = Callable[..., Metric]

Value = TypeVar("Value")


@dataclass
class Entry(Generic[Value]):
    name: str
    value: Value
    plugin: str


# Each table and the hook that fills it.
HOOKS = {"spaces": "register_spaces", "backends": "register_backends", "heads": "register_heads",
         "metrics": "register_metrics"}


class Registry:
    """The spaces, backends, heads and metrics of a set of plugins, each a table of ``Entry`` by name.

    A lazy registry (the process-wide one) calls a table's hook when that table is first read, so
    ``lowdim models`` lists backends without importing the spaces' torch code; an eager one (the
    default of ``from_plugins``) fills every table at once, raising a clash between plugins there.
    """

    def __init__(self, manager: pluggy.PluginManager | None = None) -> None:
        self.manager = manager
        self._tables: dict[str, dict[str, Entry]] = {}
        self._clashes: dict[tuple[str, str], list[str]] = {}  # (kind, name) -> the plugins that claim it
        self._withdrawn: dict[str, str] = {}  # alias -> its backend's name, left out because two plugins claim it
        self._init_checked: set[type] = set()  # space classes whose default init was probed for ΔW = 0

    @classmethod
    def from_manager(cls, manager: pluggy.PluginManager, lazy: bool = False) -> Registry:
        registry = cls(manager=manager)
        if not lazy:
            for kind in HOOKS:
                registry._table(kind)
        return registry

    @classmethod
    def from_plugins(
        cls, modules: Iterable[str | ModuleType] = BUILTIN_MODULES, load_entry_points: bool = False
    ) -> Registry:
        """The registry of the plugins in ``modules`` (default: lowdim's built-ins), plus installed ones if
        ``load_entry_points``."""
        return cls.from_manager(build_plugin_manager(modules, load_entry_points=load_entry_points))

    @property
    def spaces(self) -> dict[str, Entry[type[Space]]]:
        return self._table("spaces")

    @property
    def backends(self) -> dict[str, Entry[Backend]]:
        return self._table("backends")

    @property
    def heads(self) -> dict[str, Entry[HeadFactory]]:
        return self._table("heads")

    @property
    def metrics(self) -> dict[str, Entry[MetricFactory]]:
        return self._table("metrics")

    # -- registration ---------------------------------------------------------------------
    def _table(self, kind: str) -> dict[str, Entry]:
        if kind not in self._tables:
            table: dict[str, Entry] = {}  # kept only once complete: a clash leaves nothing half-filled
            if self.manager is not None:
                add = {"spaces": self._add_space, "backends": self._add_backend}.get(kind)
                check = {"spaces": _check_space, "backends": _check_backend}.get(kind)
                self._collect(self.manager, HOOKS[kind], add or self._add_named(kind[:-1]), table, check)
                if kind == "backends":
                    self._keep_whole_backends(table)
            self._tables[kind] = table
        return self._tables[kind]

    def _collect(self, manager: pluggy.PluginManager, hook: str, add: Any, table: dict[str, Entry],
                 check: Any = None) -> None:
        """A plugin's registrations are checked as it makes them and kept only once its hook returns: one that
        raises is skipped whole, not left with the entries it made before the error."""
        made: list[tuple] = []

        def make_kwargs(plugin: str) -> dict[str, Any]:
            made.clear()

            def register(*args: Any, **named: Any) -> None:
                _refuse_wrong_arguments(hook, args, named)
                if check is not None:
                    check(*args)
                made.append(args)

            return {"register": register}

        def keep(plugin: str) -> None:
            for args in made:
                add(table, plugin, *args)

        call_each(manager, hook, make_kwargs, on_success=keep)

    def _claim(self, table: dict[str, Entry], kind: str, name: str, value: Any, plugin: str) -> None:
        """A name two plugins claim is withdrawn (which of the two a file or command meant cannot be told),
        with a warning; everything else keeps working, and only using that name is an error."""
        current = table.get(name)
        if self._own(plugin):  # lowdim's own name stays (its commands use it), whichever plugins claimed it first
            ignored = [*self._clashes.pop((kind, name), []), *([current.plugin] if current is not None else [])]
            table[name] = Entry(name, value, plugin)
            for other in ignored:
                _warn_builtin_claimed(kind, name, other)
            return
        if current is not None and self._own(current.plugin):
            _warn_builtin_claimed(kind, name, plugin)
            return
        if current is not None and current.plugin == plugin and current.value is value:
            return  # one plugin registering one thing twice (a hook that loops over a list, say) means it once
        claimants = self._clashes.get((kind, name))
        if claimants is None and current is None:
            table[name] = Entry(name, value, plugin)
            return
        if claimants is None:
            claimants = self._clashes[(kind, name)] = [table.pop(name).plugin]
        claimants.append(plugin)
        left_out = "it is left out" if self._one_plugins_bug(kind, name) else \
            "it is left out until one of them is uninstalled"
        warnings.warn(f"{self._clash_message(kind, name)}; {left_out}", PluginWarning, stacklevel=2)

    def _one_plugins_bug(self, kind: str, name: str) -> bool:
        """Whether every claim on a clashing name is one plugin's own: uninstalling one of them loses both."""
        return len(set(self._clashes[(kind, name)])) == 1

    def _clash_message(self, kind: str, name: str) -> str:
        claimants = self._clashes[(kind, name)]
        if self._one_plugins_bug(kind, name):
            return (f"{plugin_label(claimants[0])} registers {kind} '{name}' twice, as two different things (a bug in "
                    f"the plugin, for its author to fix)")
        plugins = " and by ".join(plugin_label(plugin) for plugin in claimants)
        return f"{kind} '{name}' is registered twice: by {plugins}"

    def _clash_error(self, kind: str, name: str, alias: str = "") -> str:
        """What using a name that is left out for a clash says: the clash, and what would make the name usable."""
        remedy = "it cannot be used until the plugin is fixed" if self._one_plugins_bug(kind, name) else \
            "uninstall one of them to use it"
        return f"{self._clash_message(kind, name)}{alias}: {remedy}"

    def _add_space(self, table: dict[str, Entry], plugin: str, space_class: type[Space]) -> None:
        self._claim(table, "space", space_class.name, space_class, plugin)

    def _add_backend(self, table: dict[str, Entry], plugin: str, backend: Any) -> None:
        for key in dict.fromkeys((backend.name, *backend.aliases)):  # its own name among its aliases is no clash
            self._claim(table, "backend", key, backend, plugin)

    def _keep_whole_backends(self, table: dict[str, Entry]) -> None:
        """A backend whose own name was left out (two plugins claim it) or ignored (lowdim's own has it) is left
        out under its aliases too: the warning said the model is left out, and an alias would still run it.
        Using such an alias is then the clash error of the name."""
        for key, entry in list(table.items()):
            owner = table.get(entry.value.name)
            if owner is None or owner.value is not entry.value:
                del table[key]
                if ("backend", entry.value.name) in self._clashes:
                    self._withdrawn[key] = entry.value.name

    def _own(self, plugin: str) -> bool:
        return is_lowdims_own(self.manager, plugin)

    def _add_named(self, kind: str) -> Any:
        def add(table: dict[str, Entry], plugin: str, name: str, factory: Any) -> None:
            self._claim(table, kind, name, factory, plugin)

        return add

    # -- lookup ---------------------------------------------------------------------------
    def space_class(self, name: str) -> type[Space]:
        """The class registered as space ``name``; an unknown or clashing name is a LowdimError saying why."""
        return self._lookup(self.spaces, "space", name, "space")

    def make_space(self, name: str, config: dict[str, Any] | SpaceConfig | None = None) -> Space:
        """Space ``name`` built from ``config`` (a dict or SpaceConfig; None: defaults). Warns once per space class
        whose init does not start at a zero update (a fresh adapter would change the model before training)."""
        from lowdim.spaces.base import SpaceConfig

        space_class = self.space_class(name)
        if space_class not in self._init_checked:  # once the table is whole: probing may build other spaces
            from lowdim.spaces.checks import warn_if_init_is_not_zero

            self._init_checked.add(space_class)
            warn_if_init_is_not_zero(space_class)
        if not isinstance(config, SpaceConfig):
            config = space_class.config_class.from_dict(dict(config or {}), name)
        return space_class.build(config, self)

    def backend(self, name: str) -> Backend:
        """The backend registered as model ``name`` (a name or alias); unknown or clashing: a LowdimError."""
        return self._lookup(self.backends, "model", name, "backend")

    def backend_entry(self, name: str) -> Entry[Backend] | None:
        """The entry of the backend registered as ``name`` (a name or alias); None when none is (a path or hub
        id). A name two plugins claim is the error saying to uninstall one, not an unknown model."""
        table = self.backends
        self._refuse_a_clash("backend", name)
        return table.get(name)

    def _lookup(self, table: dict[str, Entry], kind: str, name: str, claimed_as: str) -> Any:
        """``kind`` names the table in errors ("model"); ``claimed_as`` is how its entries were claimed."""
        self._refuse_a_clash(claimed_as, name)
        if name not in table:
            known = _guess(name, table) + "known: " + (", ".join(sorted(table)) or "none")
            if kind == "space":
                raise ConfigError(_unknown_space(name, known))
            note = f"; {NO_PLUGINS_NOTE}" if plugins_disabled() else ""
            raise LowdimError(f"unknown {kind} '{name}'; {known}{note}")
        return table[name].value

    def _refuse_a_clash(self, claimed_as: str, name: str) -> None:
        clashed = self._withdrawn.get(name, name) if claimed_as == "backend" else name
        if (claimed_as, clashed) in self._clashes:
            alias = f" ('{name}' is one of its aliases)" if clashed != name else ""
            raise PluginError(self._clash_error(claimed_as, clashed, alias))

    def space_unavailable(self, name: str, package: str | None = None) -> str | None:
        """Why space ``name`` (which a file records, with the ``package`` that provided it) cannot be used here
        though a plugin for it may well be installed: two plugins claim the name, or LOWDIM_NO_PLUGINS keeps
        every plugin from loading. None when it can be used, or simply no installed plugin provides it."""
        if name in self.spaces:
            return None
        if ("space", name) in self._clashes:
            return self._clash_error("space", name)
        return no_plugins_space_note(name, package) if plugins_disabled() else None


def _unknown_space(name: str, known: str) -> str:
    """A first-party plugin's space names the package that brings it (``--space vera`` with lowdim alone); with
    LOWDIM_NO_PLUGINS set, that variable, since the plugin may well be installed."""
    from lowdim.space_packages import FIRST_PARTY_SPACES, first_party_hint

    if name in FIRST_PARTY_SPACES:
        return no_plugins_space_note(name, FIRST_PARTY_SPACES[name]) if plugins_disabled() else \
            f"unknown space '{name}'{first_party_hint(name)}"
    return f"unknown space '{name}'; {known}"


def _guess(name: str, table: dict) -> str:
    """'did you mean lora? ' for a typo of a registered name (``lroa``), as a mistyped model or flag gets."""
    import difflib

    close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
    return f"did you mean {close[0]}? " if close else ""


def _warn_builtin_claimed(kind: str, name: str, plugin: str) -> None:
    warnings.warn(f"{plugin_label(plugin)} registers {kind} '{name}', a name lowdim's own {kind} "
                  f"has, which stays (lowdim's own commands use it); the plugin's is ignored: it needs a name of its "
                  f"own", PluginWarning, stacklevel=3)


# What each hook's register() takes per call: a wrong count would otherwise be told in the words of lowdim's
# own internals (`_check_space() takes 1 positional argument`), which a plugin author cannot find.
REGISTER_TAKES = {"register_spaces": (1, "one Space subclass", "register(MySpace)"),
                  "register_backends": (1, "one Backend instance", "register(MyBackend())"),
                  "register_heads": (2, "a name and a factory", "register('name', factory)"),
                  "register_metrics": (2, "a name and a factory", "register('name', factory)")}


def _refuse_wrong_arguments(hook: str, args: tuple, named: dict[str, Any]) -> None:
    count, takes, example = REGISTER_TAKES[hook]
    if named:
        raise TypeError(f"register() in {hook} takes {takes} per call ({example}), passed positionally, not "
                        f"{', '.join(f'{key}=' for key in named)}")
    if len(args) != count:
        raise TypeError(f"register() in {hook} takes {takes} per call ({example}), not "
                        f"{counted(len(args), 'argument')}")


def _check_space(space_class: Any) -> None:
    from lowdim.spaces.checks import refuse_a_broken_space_class

    refuse_a_broken_space_class(space_class)


def _check_backend(backend: Any) -> None:
    from lowdim.backends import refuse_a_broken_backend

    refuse_a_broken_backend(backend)


def space_package(name: str, registry: Registry | None = None) -> str | None:
    """The installed package whose plugin provides space ``name`` (None: lowdim's own, or not known), which an
    adapter file records so that a machine without it can be told what to install."""
    registry = registry or get_registry()
    entry = registry.spaces.get(name)
    if entry is None or registry._own(entry.plugin):
        return None
    return package_suffix(entry.plugin).removeprefix(" (package ").removesuffix(")") or None


_current: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built from installed plugins on first use."""
    global _current
    if _current is None:
        _current = Registry.from_manager(installed_plugins(), lazy=True)
    return _current


def current_registry() -> Registry | None:
    """The registry in use if one was built or installed (``use_registry``), without building one."""
    return _current


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Temporarily replace the process-wide registry (for tests and embedding)."""
    global _current
    previous, _current = _current, registry
    try:
        yield registry
    finally:
        _current = previous


def get_space(name: str, config: dict[str, Any] | SpaceConfig | None = None, **overrides: Any) -> Space:
    """Build a registered space by name: ``get_space('lidb', a=64)``; ``config`` (a dict or SpaceConfig) and the
    keywords set its options.

    Built in: lora, lidb, ti, stack; plugins add more (vera: lowdim-vera). ``lowdim spaces -v`` lists them all with
    every option, its default and help; in Python, ``sorted(lowdim.get_registry().spaces)`` names them and
    ``lowdim.get_registry().space_class('lidb').config_class.help()`` gives one's options. An unknown name or
    option is one ConfigError (a LowdimError) naming the known ones.
    """
    from lowdim.spaces.base import SpaceConfig

    merged = {**(config.to_dict() if isinstance(config, SpaceConfig) else dict(config or {})), **overrides}
    return get_registry().make_space(name, merged)
