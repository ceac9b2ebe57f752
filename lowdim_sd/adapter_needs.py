"""What an adapter needs installed before any command uses it, as ``lowdim show`` says it: the plugin that provides
its space (or a stack's component) and the first-party plugin that brings its base model."""

from __future__ import annotations

from lowdim.errors import PluginError
from lowdim.paths import expand_user


def missing_space(meta: dict[str, str]) -> tuple[str, str] | None:
    """The row saying why the file's space, or a stack's component, cannot be used here (None: it can): two
    plugins claim it, plugins are switched off (LOWDIM_NO_PLUGINS), its installed plugin failed to load, or no
    installed plugin provides it. The file names the package (a first-party plugin's is known without)."""
    import lowdim
    from lowdim.space_packages import missing_space as first_missing
    from lowdim.space_packages import unloaded_package

    registry = lowdim.get_registry()
    try:
        missing = first_missing(meta, registry)
    except PluginError as error:  # two plugins claim a component's name: what every load says
        return "problem", str(error)
    if missing is None:
        return None
    name, package = missing
    if problem := registry.space_unavailable(name, package) or unloaded_package(name, package, registry):
        return "problem", problem
    provider = f" (package {package})" if package else ""
    return "needs", (f"the plugin that provides space '{name}'{provider}, which is not installed here (`lowdim "
                     f"spaces` lists those that are)")


def missing_model(base_model: str | None) -> tuple[str, str] | None:
    """The row naming the first-party plugin that brings the file's base model, where it is not installed here
    (`use it: lowdim generate -m tinyfaces ...` would be refused); None otherwise."""
    import lowdim
    from lowdim_sd.registered_models import FIRST_PARTY_MODELS

    name = (base_model or "").lower()
    if name not in FIRST_PARTY_MODELS or name in lowdim.get_registry().backends or expand_user(name).exists():
        return None
    return "needs", (f"the plugin that provides model '{name}' (package {FIRST_PARTY_MODELS[name]}), which is not "
                     f"installed here: pip install {FIRST_PARTY_MODELS[name]}")
