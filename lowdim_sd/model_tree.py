"""Where a model's files are on this machine, and the output folders that must stay out of them.

A run that writes into a model's folder changes the model: an adapter in the folder makes ``lowdim show`` describe
the adapter, and any entry in a part folder with no '.' in its name (a ``checkpoints/`` folder) stops diffusers
loading an fp16-variant folder. So ``merge``, ``train`` and ``personalize`` refuse an ``--out`` that is the model,
lies inside it, or holds it where the run would write or replace it, before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lowdim.errors import LowdimError
from lowdim.option_words import either
from lowdim.paths import expand_user, named


def model_path(model: str | os.PathLike[str]) -> Path | None:
    """Where the model's files are here, resolved (symbolic links followed; a registered name: its folder); None
    where none is (a hub id)."""
    from lowdim_sd.registered_models import registered_entry

    backend = registered_entry(str(model))
    path = expand_user(str(getattr(backend.value, "source", None) or model) if backend else model)
    return path.resolve() if path.exists() else None


def refuse_out_in_model(out: Path, model: str | os.PathLike[str], command: str, out_option: str = "--out",
                        outputs: Sequence[Path] | None = None) -> None:
    """One line when ``out`` is the model's folder (or file), lies inside it, or holds it: any folder holding it
    where ``outputs`` is None (merge, which replaces --out whole), else one where the model lies at or under one
    of the ``outputs`` (the paths in ``out`` the run writes or may remove). ``command`` names the command in the
    line, ``out_option`` the option as its reader typed it."""
    base = model_path(model)
    if base is None:
        return
    target = expand_user(out).resolve()  # a link to the model, or a folder not made yet inside it
    pick = f"pick a new {out_option}"
    if target == base:
        raise LowdimError(f"{out}: is the base model itself ({base}); {command} never writes into a model; {pick}")
    if base in target.parents:
        raise LowdimError(f"{out}: is inside the base model {base}; {command} never writes into a model's folder "
                          f"(its files would change the model); {pick} outside it")
    if target not in base.parents:
        return
    landing = [path for path in outputs or () if _under(base, expand_user(path).resolve())]
    if landing:
        raise LowdimError(f"{out}: holds the base model at {landing[0]}, a path the run writes (or replaces with "
                          f"{either('--overwrite', 'overwrite=True')}); {command} never replaces a model; {pick}")
    if outputs is None:
        raise LowdimError(f"{out}: holds the base model {base}, which {command} never replaces; {pick}")


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def pipeline_holding(folder: Path) -> Path | None:
    """The diffusers pipeline folder ``folder`` is a part of (its parent, whose ``model_index.json`` lists it), for
    the lines that refuse a part where the pipeline belongs; None for any other folder."""
    from lowdim_sd.weights_folder import read_config_json

    name = Path(os.path.abspath(folder)).name
    parent = named(folder).parent
    try:
        listed = name in read_config_json(parent / "model_index.json")
    except (LowdimError, OSError):  # no index, or an unreadable one: no pipeline to point to
        return None
    return parent if listed else None


def pass_the_pipeline(folder: Path) -> str:
    """'; it is the unet part of the pipeline base: pass base' where ``folder`` is a pipeline's part, else ''."""
    pipeline = pipeline_holding(folder)
    if pipeline is None:
        return ""
    name = Path(os.path.abspath(folder)).name
    return f"; it is the {name} part of the diffusers pipeline {pipeline}: pass {pipeline}"
