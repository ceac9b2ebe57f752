"""What a model word stands for (``-m``, ``model=``, ``--model-config``): a registered model's own name and what
loads it, the name files record, a bare word close to a registered name refused as a typo, and where a single
file's configs come from. ``lowdim_sd.loading`` exports these names, as it always has."""

from __future__ import annotations

import os
from pathlib import Path
from typing import overload

from lowdim.paths import expand_user
from lowdim_sd.model_errors import ModelLoadError
from lowdim_sd.recorded_paths import is_recorded_name


def canonical_model(model: str) -> str:
    """How files record a model: a registered model by its backend's own name (an alias is the same model: a
    hypernetwork made for ``sd15`` fits ``-m sd1.5``), a hub id as given, a local path made absolute, so a
    hypernetwork or weight folder made from ``./sd`` still matches ``/home/me/sd`` (or ``sd`` elsewhere)."""
    from lowdim_sd.registered_models import canonical_name

    name = canonical_name(model)
    if name is not None:
        return name
    path = expand_user(model)
    return str(path.resolve()) if path.exists() else model


def name_and_source(model: str, refuse_typos: bool = True) -> tuple[str, str]:
    """(name, source) of ``model``: a registered model's own name (never an alias) and what loads it, its hub id
    or folder; a path or hub id is both. A clashed name, or a registered model that is not SD1.x, is one line;
    with ``refuse_typos``, so is a bare word close to a registered name."""
    from lowdim.registry import get_registry
    from lowdim_sd.registered_models import sd_backend

    backend = sd_backend(model)  # a clashed name, or a registered model that is not SD1.x: one line, no hub
    if backend is None:
        if refuse_typos:
            refuse_a_misspelt_name(model, list(get_registry().backends))
        return model, model
    source = getattr(backend, "source", None)  # a subclass may skip SDBackend.__init__
    return backend.name, str(source or model)


def refuse_a_misspelt_name(model: str, registered: list[str]) -> None:
    """A bare word close to a registered name is a typo, refused at once: the hub lookup it would otherwise
    go to takes seconds offline and ends in an error that never names the model meant."""
    import difflib

    if "/" in model or os.sep in model or expand_user(model).exists():
        return
    close = difflib.get_close_matches(model.lower(), registered, n=1, cutoff=0.75)
    if close:
        raise ModelLoadError(f"unknown model '{model}'; did you mean {close[0]}? (registered: "
                             f"{', '.join(sorted(registered))}; or a hub id, a folder or a .safetensors file)")


@overload
def config_source(model: str, config: str) -> str: ...
@overload
def config_source(model: str, config: None) -> str | None: ...
def config_source(model: str, config: str | None) -> str | None:
    """Where a single file's configs come from: ``--model-config`` (a registered name stands for its folder or
    hub id); else, for a file ``lowdim merge`` wrote, the base model it names when that is a registered name
    or a folder here, or the configs folder it records (a merge of a single file read with --model-config); else
    None, and diffusers infers them."""
    from lowdim.registry import get_registry

    if config is not None:
        from lowdim_sd.model_paths import model_config_source

        return model_config_source(str(registered_source(config) or config), list(get_registry().backends))
    path = expand_user(model)
    if not (path.is_file() and path.suffix.lower() == ".safetensors"):
        return None
    from lowdim_sd.ldm_checkpoint import stored_base_model

    base = stored_base_model(path)
    if base is None:
        return None
    found = registered_source(base)
    if found is not None:
        return found
    return base if is_model_folder(base) else recorded_configs(path)


def registered_source(name: str) -> str | None:
    """What the registered model ``name`` (or alias) loads from here, its folder or hub id; None where no model of
    that name is registered."""
    from lowdim.registry import get_registry

    backend = get_registry().backends.get(name)
    source = getattr(backend.value, "source", None) if backend else None
    return str(source) if source else None


# In a merge's record: where a single-file base's configs came from (its --model-config), so the merge loads with
# none: a registered model by its name, any other folder by its absolute path (recorded_paths.recorded_folder); a
# merge from before the name was recorded holds a registered model's folder by its path too, read as any folder.
CONFIGS_KEY = "model_config"


def recorded_configs(path: Path) -> str | None:
    """The configs a merged single file records, where they are here: the folder it names while that is still a
    model folder, or what the registered model it names loads from (its folder or hub id); else None."""
    recorded = _configs_in_record(path)
    if recorded is None:
        return None
    if is_recorded_name(recorded):
        return registered_source(recorded)
    return recorded if is_model_folder(recorded) else None


def moved_configs(path: Path) -> str | None:
    """The configs folder a merged single file records where it is no model folder any more (moved or deleted):
    its load then needs ``--model-config`` again, and is told which folder went. None for a registered name."""
    recorded = _configs_in_record(path)
    return recorded if recorded is not None and not is_recorded_name(recorded) and not is_model_folder(recorded) \
        else None


def unregistered_configs(path: Path) -> str | None:
    """The registered model a merged single file read its configs from where no model of that name is registered
    here (its plugin not installed): its load then needs ``--model-config``."""
    recorded = _configs_in_record(path)
    return recorded if recorded is not None and is_recorded_name(recorded) and not registered_source(recorded) \
        else None


def is_model_folder(folder: str) -> bool:
    return (expand_user(folder) / "model_index.json").is_file()


def _configs_in_record(path: Path) -> str | None:
    from lowdim_sd.merged_model import read_merge_record  # merged_model loads models: imports this

    folder = (read_merge_record(path) or {}).get(CONFIGS_KEY)
    return folder if isinstance(folder, str) and folder else None  # none: a merge before the record held it
