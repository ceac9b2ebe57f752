"""Which registered model a ``--model`` word names, looked up the one way every SD command looks it up.

A name two plugins claim is the registry's one line saying to uninstall one (not "unknown model", nor a trip
to the hub); a registered model that is no SD1.x model says so; a path or hub id is an SD1.x model read from
its files, with SD1.5's layer sets. Nothing here imports torch: the CLI uses it before any model loads.
"""

from __future__ import annotations

import os

from lowdim.errors import LowdimError
from lowdim.injection.select import LayerSet
from lowdim.paths import expand_user
from lowdim.plugins import NO_PLUGINS_NOTE, plugins_disabled
from lowdim.registry import Entry, get_registry, plugin_label
from lowdim.space_packages import absent_plugin_words
from lowdim_sd.plugin import SDBackend


def registered_entry(model: str) -> Entry | None:
    """The registry entry of ``model``: a name, an alias, or a registered SD1.x model's own folder (``lowdim show
    tinyfaces`` names it), which is that model; None for another path or a hub id. A clashed name raises."""
    return get_registry().backend_entry(model) or _entry_of_folder(model)


def sd_backend(model: str) -> SDBackend | None:
    """The registered SD1.x backend ``model`` names; None for a path or hub id.

    A registered model of another kind (a plugin's generic ``Backend``) is one line saying so, rather than a
    hub lookup of its name; with LOWDIM_NO_PLUGINS set, a bare word is an unknown model that says why.
    """
    entry = registered_entry(model)
    if entry is None:
        refuse_a_bare_word_without_plugins(model)
        refuse_a_model_whose_plugin_is_missing(model)
        return None
    if not isinstance(entry.value, SDBackend):
        raise LowdimError(f"model '{model}', registered by {plugin_label(entry.plugin)}, is not an SD1.x model: "
                          f"lowdim's SD commands (personalize, train, generate, ...) need a "
                          f"lowdim_sd.plugin.SDBackend; `lowdim inspect -m {model} -s lidb` works with it")
    return entry.value


def _entry_of_folder(model: str) -> Entry | None:
    """The entry of the registered SD1.x model whose files ``model`` is the folder of: that model, with its
    hypernetwork, describer and crop, not an unknown one trained from zero."""
    path = expand_user(model)
    if not path.is_dir():
        return None
    here = path.resolve()
    found = {id(entry.value): entry for entry in get_registry().backends.values()  # an alias is the same model
             if isinstance(entry.value, SDBackend) and getattr(entry.value, "source", None)
             and expand_user(str(entry.value.source)).resolve() == here}
    return next(iter(found.values())) if len(found) == 1 else None  # two models on one folder: no guess


def refuse_a_bare_word_without_plugins(model: str) -> None:
    """With LOWDIM_NO_PLUGINS set even sd15 and tinyfaces are unregistered: a bare word is then said to be an
    unknown model, naming the variable, instead of being looked up on the hub (seconds, then a wrong cause)."""
    if plugins_disabled() and "/" not in model and os.sep not in model and not expand_user(model).exists():
        raise LowdimError(f"unknown model '{model}': {NO_PLUGINS_NOTE}")


# Models lowdim's own plugins register, by the distribution that brings each: a wheel install has them only
# once that plugin is installed, and the name would otherwise go to the hub as a repository id.
FIRST_PARTY_MODELS = {"tinyfaces": "lowdim-tinyfaces"}


def missing_plugin_words(model: str) -> str | None:
    """'it comes with the plugin lowdim-tinyfaces, which is not installed (pip install ...)' for a first-party
    plugin's model; None for any other name."""
    plugin = FIRST_PARTY_MODELS.get(model.lower())
    return None if plugin is None else f"it comes with {absent_plugin_words(plugin)}"


def refuse_a_model_whose_plugin_is_missing(model: str) -> None:
    """A first-party plugin's model named without its plugin says which distribution brings it."""
    words = missing_plugin_words(model)
    installed = model.lower() in get_registry().backends  # "TinyFaces" with the plugin there: a typo, said so later
    if words is not None and not installed and not expand_user(model).exists():
        raise LowdimError(f"unknown model '{model}': {words}")


def model_layer_set(name_or_patterns: str | None, model: str | None = None) -> LayerSet:
    """A layer set of ``model`` by name (its default when None) or comma-separated glob patterns.

    A registered model's own sets, as `lowdim models` lists them and `lowdim inspect` counts them; for a path,
    a hub id or no model, SD1.5's (default unet+text, the paper's). An unknown set's error names the model.
    """
    backend = sd_backend(model) if model else None  # a file that records no model: ""
    return (backend or SDBackend(model or "sd15", "")).resolve_layer_set(name_or_patterns)


def canonical_name(model: str) -> str | None:
    """The backend's own name for a registered name or alias (``mini`` -> ``minisd``), else None."""
    entry = registered_entry(model)
    return entry.value.name if entry is not None else None
