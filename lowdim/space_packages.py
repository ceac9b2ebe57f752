"""Which package each space of an adapter file comes from, so that a machine without it is told what to install.

A file records the package of its own space (``space_package``) and, for a stack, those of its components too
(``space_packages``, JSON: space name -> package): `personalize --space vera` writes a stack, built in, whose
frozen component is the plugin's. A file without the second key (older lowdims) is read as before, with the
first-party table below naming lowdim's own plugins' packages where the file names none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lowdim import json_text
from lowdim.errors import ConfigError

if TYPE_CHECKING:
    import pluggy

    from lowdim.registry import Registry
    from lowdim.spaces.base import Space

# Spaces lowdim's own plugins register, by the distribution that brings each: a wheel install has them only once
# that plugin is installed (lowdim_sd.registered_models.FIRST_PARTY_MODELS is the same for models).
FIRST_PARTY_SPACES = {"vera": "lowdim-vera"}


def not_installed_words(plugin: str) -> str:
    """'the plugin P, which is not installed (pip install P; ...)': how every message about a missing first-party
    plugin (its space, its command, the root help's first steps) names it and what to run, in the same words."""
    return (f"the plugin {plugin}, which is not installed (pip install {plugin}; from a checkout, pip install -e "
            f"plugins/{plugin})")


def absent_plugin_words(plugin: str) -> str:
    """``not_installed_words``, unless P may well be installed: with LOWDIM_NO_PLUGINS set, that variable; where its
    entry point failed to load, that error (reinstalling from pip would be the wrong advice)."""
    from lowdim.plugins import PLUGINS_OFF, failed_to_load, plugins_disabled

    if plugins_disabled():
        return f"the plugin {plugin}, and {PLUGINS_OFF}"
    if error := failed_to_load().get(plugin):
        return f"the plugin {plugin}, {failed_words(error)}"
    return not_installed_words(plugin)


def failed_words(error: str) -> str:
    """'which is installed but failed to load (ERROR): fix or reinstall it (...)', of a plugin's package."""
    return (f"which is installed but failed to load ({' '.join(error.split())}): fix or reinstall it "
            f"(`lowdim --version` lists plugin errors)")


def first_party_hint(name: str) -> str:
    """': it comes with the plugin P, which is not installed (...)' for a first-party plugin's space; '' else."""
    plugin = FIRST_PARTY_SPACES.get(name)
    return f": it comes with {absent_plugin_words(plugin)}" if plugin is not None else ""


def space_names(name: str, config: Any) -> list[str]:
    """The space ``name`` and, for a stack (its config has ``components``), each component's, nested ones too,
    in the order a load makes them, each once. Read from the recorded config: it works where none is installed."""
    names = [name]
    components = config.get("components") if isinstance(config, Mapping) else None
    for component in components if isinstance(components, list) else []:
        if isinstance(component, Mapping) and isinstance(component.get("space"), str):
            names += space_names(component["space"], component.get("config") or {})
    return list(dict.fromkeys(names))


def package_metadata(space: Space) -> dict[str, str]:
    """The metadata keys ``save_adapter`` writes about packages: ``space_package`` for the file's own space (as
    before), and ``space_packages`` where a stack's component comes from a plugin. Nothing for lowdim's own."""
    from lowdim.registry import space_package

    packages = {name: package for name in space_names(space.name, space.config.to_dict())
                if (package := space_package(name))}
    metadata = {"space_package": packages[space.name]} if space.name in packages else {}
    if set(packages) - {space.name}:
        metadata["space_packages"] = json.dumps(packages, separators=(",", ":"), sort_keys=True)
    return metadata


def recorded_package(metadata: Mapping[str, str], name: str) -> str | None:
    """The package the file says space ``name`` came from, else the first-party plugin that brings it."""
    try:
        packages = json_text.loads(metadata.get("space_packages") or "{}")
    except ValueError:  # a damaged record costs only the hint
        packages = {}
    top = metadata.get("space_package") if name == metadata.get("space") else None
    package = packages.get(name) if isinstance(packages, dict) else None
    return str(package or top or FIRST_PARTY_SPACES.get(name) or "") or None


def missing_space(metadata: Mapping[str, str], registry: Registry) -> tuple[str, str | None] | None:
    """(name, package) of the first space the file needs that is not registered here; None when all are. Two
    plugins claiming a name raise the registry's PluginError (the user's to fix), as a load does."""
    name = str(metadata.get("space"))
    try:
        config = json_text.loads(metadata.get("space_config") or "{}")
    except ValueError:  # the load's own check says the metadata is corrupted
        config = {}
    for needed in space_names(name, config):
        try:
            registry.space_class(needed)
        except ConfigError:
            return needed, recorded_package(metadata, needed)
    return None


def missing_space_words(name: str, package: str | None, registry: Registry) -> str:
    """Why the file's space ``name`` cannot be made here: plugins switched off, a clash, or not installed."""
    if problem := registry.space_unavailable(name, package) or unloaded_package(name, package, registry):
        return problem
    if package is not None and package == FIRST_PARTY_SPACES.get(name):  # the words `--space vera` gets
        return f"its space '{name}' comes with {not_installed_words(package)}"
    provider = f" (package {package})" if package else ""
    return (f"its space '{name}' is not installed here (known: {', '.join(sorted(registry.spaces))}); install the "
            f"plugin that provides it{provider}")


def unloaded_package(name: str, package: str | None, registry: Registry) -> str | None:
    """Why space ``name`` is missing though its recorded ``package`` is installed here: the package's entry point
    failed to load (the error ``lowdim --version`` lists), or it loaded but registers no such space (its hook raised,
    with a warning saying where, or this version of it has none). None: the package is not installed, or unknown."""
    from lowdim.plugins import failed_to_load

    if not package:
        return None
    if error := failed_to_load().get(package):
        return f"its space '{name}' comes from package {package}, {failed_words(error)}"
    if loads_a_plugin_of(package, registry.manager):
        return (f"its space '{name}' comes from package {package}, which is installed but registers no space "
                f"'{name}' here: a hook of it raised (the plugin warning says where), or this version of it has none")
    return None


def loads_a_plugin_of(package: str, manager: pluggy.PluginManager | None) -> bool:
    """Whether ``manager``'s plugins (a registry's, or those the CLI adds commands of) include one installed by
    distribution ``package``. Reads entry points only: no plugin hook runs, nothing imports torch."""
    from lowdim.plugin_calling import plugin_label

    loaded = manager.list_name_plugin() if manager is not None else []
    return any(plugin_label(plugin).endswith(f"(package {package})") for plugin, _ in loaded if plugin)
