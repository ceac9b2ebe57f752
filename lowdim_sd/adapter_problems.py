"""What every load of a lowdim adapter would refuse in it, in the load's own words, found for ``lowdim show`` (which
reads broken files too) from the header and, last, the values' finiteness; the basis_checksum, which takes making
the bases again, is ``adapter_info.bases_problem``'s."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lowdim import json_text
from lowdim.bases_record import recorded_seed
from lowdim.errors import AdapterFileError, ConfigError, LowdimError
from lowdim.file_fit import EMBEDDING_LAYERS, checked_embedding_layers, config_problem
from lowdim.filecheck import (
    basis_kind,
    buffer_shapes,
    check_finite,
    check_flat,
    check_regeneration,
    checked_dropout,
    checked_scales,
    param_kind,
    unflatten,
)
from lowdim.files import BUFFER_PREFIX
from lowdim_sd.file_info_parts import Header

if TYPE_CHECKING:
    from lowdim.spaces.base import Space


# A problem row's ending where every load refuses the file (a missing plugin's row says its own).
REFUSED_BY_EVERY_LOAD = ": every command that loads this file refuses it"


def record_problem(path: Path, meta: dict[str, str], layers: list) -> str:
    """Why every load refuses the file's dropout or scales record, or every command that takes its token that token
    ("": none does); shown, since show reads broken files too."""
    from lowdim_sd.taught_tokens import token_problem

    for key in ("dropout", "scales", EMBEDDING_LAYERS):
        if problem := refused_record(path, meta, layers, key):
            return f"{problem}{REFUSED_BY_EVERY_LOAD}"
    return token_problem(meta)  # generate, merge, train --init and export take the token


def refused_record(path: Path, meta: dict[str, str], layers: list, key: str) -> str:
    """The load's words for why it refuses the file's 'dropout', 'scales' or 'embedding_layers' record ("": it
    takes it)."""
    try:
        if key == "dropout":
            checked_dropout(meta.get("dropout"), path)
        elif key == EMBEDDING_LAYERS:
            checked_embedding_layers(meta.get(key), layers, path)
        else:
            checked_scales(meta.get("scales"), layers, path)
    except LowdimError as error:
        return str(error).removeprefix(f"{path}: ")
    return ""


def size_problem(path: Path, meta: dict[str, str], header: Header, layers: list) -> str:
    """What a load would refuse in the file's space, seed or tensors ("": nothing), from the header, then the values'
    finiteness."""
    import lowdim

    try:
        config = json_text.loads(meta.get("space_config") or "{}")
    except ValueError as error:
        return f"the space_config in the metadata is corrupted ({error})"
    if not isinstance(config, dict):
        return "the space_config in the metadata is not a JSON object"
    try:
        space = lowdim.get_registry().make_space(meta["space"], config)
        for layer in layers:  # a plugin's space that cannot shape a layer: named here, not as a tensor's fault
            space.param_shapes(layer)
    except ConfigError as error:  # an option a newer lowdim or plugin added: say to upgrade, as a load does
        return f"its space '{meta.get('space')}' cannot be made from the config it records ({config_problem(error)})"
    except (LowdimError, KeyError, ValueError, TypeError) as error:
        return f"its space '{meta.get('space')}' cannot be made from the config it records ({error})"
    try:
        recorded_seed(meta, path)  # what a load reads after the space: a seed its bases are made from
    except AdapterFileError as error:
        return str(error).removeprefix(f"{path}: ")
    return tensor_problem(path, space, layers, header) or values_problem(path, space, layers)


def values_problem(path: Path, space: Space, layers: list) -> str:
    """The load's words for NaN or Inf in the file's params or stored bases ("": every value is finite), by the
    load's own check on the values (a diverged run's file). Run once ``tensor_problem`` found the tensors fit."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    params = {key: value for key, value in tensors.items() if not key.startswith(BUFFER_PREFIX)}
    bases = {key.removeprefix(BUFFER_PREFIX): value for key, value in tensors.items() if key.startswith(BUFFER_PREFIX)}
    try:
        check_finite(unflatten(params, layers, space.param_shapes, path, param_kind(space)), path)
        if bases:
            check_finite(unflatten(bases, layers, lambda layer: buffer_shapes(space, layer), path, basis_kind(space),
                                   BUFFER_PREFIX), path, "stored basis")
    except LowdimError as error:  # its "; refusing it" is said by the row's own ending
        return str(error).removeprefix(f"{path}: ").removesuffix("; refusing it")
    return ""


def tensor_problem(path: Path, space: Space, layers: list, header: Header) -> str:
    """The load's words for the first of the file's tensors it refuses ("": none): a stray, missing or wrong-sized
    param or stored basis, or one stored as no floats. The load's own checks run on meta-device tensors of the
    header's shapes and dtypes, so no value is read; stored bases are sized by making each layer's, bounded as a load
    without a model bounds them."""
    try:  # each of the stored dtype, so a tensor of integers is named as the load names it
        tensors = header.meta_tensors()
    except LowdimError as error:  # a dtype torch lacks: the load fails to read the file, in safetensors' words
        return str(error)
    params = {key: value for key, value in tensors.items() if not key.startswith(BUFFER_PREFIX)}
    bases = {key.removeprefix(BUFFER_PREFIX): value for key, value in tensors.items() if key.startswith(BUFFER_PREFIX)}
    try:
        check_flat(tensors, path)
        unflatten(params, layers, space.param_shapes, path, param_kind(space))
        if bases:
            check_regeneration(space, layers, path)
            unflatten(bases, layers, lambda layer: buffer_shapes(space, layer), path, basis_kind(space), BUFFER_PREFIX)
    except LowdimError as error:
        return str(error).removeprefix(f"{path}: ")
    except (ValueError, RuntimeError) as error:  # a plugin's make_buffers that refuses the layer its own way
        return unmakeable_bases(space, error)
    return ""


def unmakeable_bases(space: Space, error: Exception) -> str:
    return f"its space '{space.name}' cannot make the frozen bases of its layers ({error})"
