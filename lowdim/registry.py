"""The registry: every space, backend, head and metric that the plugins registered, by name.

``get_registry()`` builds it once per process from installed plugins. Tests build their own
with ``Registry.from_plugins([...])`` and can install it with ``use_registry``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from lowdim.errors import ConfigError, LowdimError, PluginError
from lowdim.plugins import BUILTIN_MODULES, build_plugin_manager, call_each, installed_plugins

if TYPE_CHECKING:  # they import torch; the CLI reads this module to list plugin commands without it
    from lowdim.spaces.base import Space, SpaceConfig


@dataclass
class Entry:
    name: str
    value: Any
    plugin: str


@dataclass
class Registry:
    spaces: dict[str, Entry] = field(default_factory=dict)
    backends: dict[str, Entry] = field(default_factory=dict)
    heads: dict[str, Entry] = field(default_factory=dict)
    metrics: dict[str, Entry] = field(default_factory=dict)
    manager: pluggy.PluginManager | None = None

    @classmethod
    def from_manager(cls, manager: pluggy.PluginManager) -> Registry:
        registry = cls(manager=manager)
        registry._collect(manager, "register_spaces", registry._add_space)
        registry._collect(manager, "register_backends", registry._add_backend)
        registry._collect(manager, "register_heads", registry._add_named(registry.heads, "head"))
        registry._collect(manager, "register_metrics", registry._add_named(registry.metrics, "metric"))
        return registry

    @classmethod
    def from_plugins(
        cls, modules: Iterable[str | ModuleType] = BUILTIN_MODULES, load_entry_points: bool = False
    ) -> Registry:
        return cls.from_manager(build_plugin_manager(modules, load_entry_points=load_entry_points))

    # -- registration ---------------------------------------------------------------------
    def _collect(self, manager: pluggy.PluginManager, hook: str, add: Any) -> None:
        def make_kwargs(plugin: str) -> dict[str, Any]:
            return {"register": lambda *args: add(plugin, *args)}

        call_each(manager, hook, make_kwargs)

    def _claim(self, table: dict[str, Entry], kind: str, name: str, value: Any, plugin: str) -> None:
        if name in table:
            raise PluginError(
                f"{kind} '{name}' is registered twice: by plugin '{table[name].plugin}' and by plugin '{plugin}'"
            )
        table[name] = Entry(name, value, plugin)

    def _add_space(self, plugin: str, space_class: type[Space]) -> None:
        from lowdim.spaces.base import Space

        if not (isinstance(space_class, type) and issubclass(space_class, Space)):
            raise TypeError(f"register_spaces expects a Space subclass, got {space_class!r}")
        self._claim(self.spaces, "space", space_class.name, space_class, plugin)

    def _add_backend(self, plugin: str, backend: Any) -> None:
        for key in (backend.name, *getattr(backend, "aliases", ())):
            self._claim(self.backends, "backend", key, backend, plugin)

    def _add_named(self, table: dict[str, Entry], kind: str) -> Any:
        def add(plugin: str, name: str, factory: Any) -> None:
            self._claim(table, kind, name, factory, plugin)

        return add

    # -- lookup ---------------------------------------------------------------------------
    def space_class(self, name: str) -> type[Space]:
        return self._lookup(self.spaces, "space", name)

    def make_space(self, name: str, config: dict[str, Any] | SpaceConfig | None = None) -> Space:
        from lowdim.spaces.base import SpaceConfig

        space_class = self.space_class(name)
        if not isinstance(config, SpaceConfig):
            config = space_class.config_class.from_dict(dict(config or {}), name)
        return space_class.build(config, self)

    def backend(self, name: str) -> Any:
        return self._lookup(self.backends, "model", name)

    def backend_names(self) -> list[str]:
        return sorted({entry.value.name for entry in self.backends.values()})

    def _lookup(self, table: dict[str, Entry], kind: str, name: str) -> Any:
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise (ConfigError if kind == "space" else LowdimError)(f"unknown {kind} '{name}'; known: {known}")
        return table[name].value


_current: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built from installed plugins on first use."""
    global _current
    if _current is None:
        _current = Registry.from_manager(installed_plugins())
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
    """Build a registered space by name: ``get_space('lidb', a=64)``."""
    from lowdim.spaces.base import SpaceConfig

    merged = {**(config.to_dict() if isinstance(config, SpaceConfig) else dict(config or {})), **overrides}
    return get_registry().make_space(name, merged)
