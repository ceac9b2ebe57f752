"""``lowdim show`` on a lowdim adapter: its space, layers, seed and recipe, read from the header; the values are read
only to check them finite, as every load does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from shlex import quote
from typing import TYPE_CHECKING

from lowdim import json_text
from lowdim.bases_record import check_bases, layers_checksum, recorded_checksum, recorded_seed, regenerate
from lowdim.errors import AdapterFileError, ConfigError, LowdimError
from lowdim.file_fit import (
    EMBEDDING_LAYERS,
    checked_embedding_layers,
    config_problem,
    format_version_problem,
    incomplete_metadata,
)
from lowdim.filecheck import (
    MAX_LAYER_REGENERATED,
    basis_kind,
    buffer_shapes,
    check_finite,
    check_flat,
    check_regeneration,
    checked_dropout,
    checked_scales,
    param_kind,
    regeneration_cost,
    unflatten,
)
from lowdim.files import BUFFER_PREFIX, FORMAT_VERSION, AdapterFile, unpack_layers
from lowdim.paths import expand_user
from lowdim_sd.adapter_needs import missing_model, missing_space
from lowdim_sd.export import COMPONENTS
from lowdim_sd.file_info_parts import (
    FileInfo,
    Header,
    bounded,
    command_word,
    compact,
    json_object,
    number,
    parsed_json,
    shown_whole,
    size_text,
    space_object,
    summary,
)
from lowdim_sd.prompt_words import with_looks
from lowdim_sd.recorded_paths import shipped_text

if TYPE_CHECKING:
    from torch import Tensor

    from lowdim.spaces.base import LayerSpec, Space


def learned_phrase(metadata: dict) -> str:
    """The phrase an adapter learned, with the looks personalize read from the photo (its `draw it:` line
    names them too): 'a [V] face with ginger long hair'."""
    recipe = json_object(metadata.get("extra"))
    return with_looks(str(recipe.get("prompt") or "a [V] face"), str(recipe.get("looks") or ""))


# A space's frozen state is made again at each load: LiDB's random bases from the seed, a TI file's row selector
# from its config alone.
REMADE = "made again when loaded (from the seed and the space's config)"


def describe_adapter(path: Path, header: Header) -> FileInfo:
    meta = header.metadata
    layers = unpack_layers(meta.get("layers", "[]"), path)
    stored = any(key.startswith(BUFFER_PREFIX) for key in header.shapes)
    remade = not stored and has_bases(meta, layers)
    # The params' own dtype: the 'dtype' metadata is a claim no load reads, so an edited one would mislead.
    dtype = header.dtype([key for key in header.shapes if not key.startswith(BUFFER_PREFIX)]) or meta.get("dtype")
    refused = {key for key in ("scales", "dropout") if meta.get(key) and refused_record(path, meta, layers, key)}
    rows = [("space", f"{bounded(meta.get('space', '?'))} {bounded(meta.get('space_config', ''))}".strip()),
            ("layers", f"{len(layers) if 'layers' in meta else '?'}" + (f" ({bounded(meta['layer_set'])})"
                                                                          if meta.get("layer_set") else "")),
            ("trainable params", params_text(meta)),
            ("file", f"{size_text(path)}, {dtype or '?'}"),
            ("seed", meta.get("seed", "?")),
            ("frozen bases", "stored in the file" if stored else REMADE if remade else "none")]
    recorded = record_rows(meta, refused)
    rows += [(label, shown) for _, label, shown in recorded]
    recipe = json_object(meta.get("extra"))
    # The network a model ships by that model (its record holds no path, docs/sd.md "Paths in files"); else as stored
    rows += [(f"recipe: {key}", bounded((key == "hypernet" and shipped_text(value)) or compact(value)))
             for key, value in recipe.items()]  # --json: whole
    values = {"space": space_object(meta.get("space"), meta.get("space_config", "")),
              "layers": {"count": len(layers), "set": meta.get("layer_set") or None},
              "trainable params": number(meta.get("num_params")) if meta.get("num_params") else 0,
              "file": {"bytes": path.stat().st_size, "dtype": dtype}, "seed": number(meta.get("seed")),
              **({"layer scales": meta["scales"] if "scales" in refused else parsed_json(meta["scales"], None)}
                 if meta.get("scales") else {}),
              **({"trained with dropout": number(meta["dropout"])} if meta.get("dropout") else {}),
              "frozen bases": {"stored": stored} if stored or remade else None,
              **{f"recipe: {key}": value.strip() if isinstance(value, str) else value
                 for key, value in recipe.items()}}
    # --json gives a row the table shows cut as its text; one it gives as a number or an object stays one
    values = {**{label: meta[key] for key, label, shown in recorded if shown != meta[key]}, **values}
    if problem := format_version_problem(meta, "adapter", FORMAT_VERSION) or incomplete_metadata(meta):  # all refuse
        rows.insert(1, ("problem", problem))
        return FileInfo(path, "a lowdim adapter", rows, "", values, type="adapter")
    if problem := record_problem(path, meta, layers):
        rows.insert(1, ("problem", problem))
        return FileInfo(path, "a lowdim adapter", rows, "", values, type="adapter")
    if missing := missing_space(meta) or missing_model(meta.get("base_model")):  # a command would refuse it
        rows.insert(1, missing)
        return FileInfo(path, "a lowdim adapter", rows, "", values, type="adapter")
    if problem := size_problem(path, meta, header, layers):
        rows.insert(1, ("problem", f"{problem}: every command that loads this file refuses it"))
        return FileInfo(path, "a lowdim adapter", rows, "", values, type="adapter")
    checked = bases_problem(path, meta, layers, stored)  # last: it makes the bases
    if checked:
        rows.insert(1, ("problem", f"{checked}: every command that loads this file refuses it"))
        return FileInfo(path, "a lowdim adapter", rows, "", values, type="adapter")
    if checked is None and values["frozen bases"] is not None:
        rows = [(label, f"{text}{NOT_CHECKED}" if label == "frozen bases" else text) for label, text in rows]
        values["frozen bases"] = {"stored": stored, "checked": False}
    if not all(is_sd_layer(layer.name) for layer in layers):  # generate would refuse it: another model's adapter
        return FileInfo(path, "a lowdim adapter", rows, f"lowdim.load_adapter({str(path)!r}, model)", values,
                        type="adapter")
    # A base model the table cannot show as it is (an escape sequence, 100 KB) is no command to copy: MODEL instead.
    base = command_word(meta.get("base_model") or "", "MODEL")
    configs = configs_flag_for(meta.get("base_model") or "")
    return FileInfo(path, "a lowdim adapter", rows,
                    f"lowdim generate -m {base}{configs} -a {quote(str(path))} -p {use_prompt(meta, recipe)}", values,
                    type="adapter")


def params_text(meta: dict[str, str]) -> str:
    """The 'trainable params' row: the count the file records, or what is wrong with a record that is no whole
    number. A record only (``num_params``: no load reads it, the file loads as it is), so a damaged one is said in
    its row, not as a problem: show still reads the rest, and the use line still runs."""
    recorded = number(meta.get("num_params")) if meta.get("num_params") else 0
    if isinstance(recorded, int):
        return f"{recorded:,}"
    return (f"unknown: the 'num_params' in the metadata is {summary(meta['num_params'])}, not a whole number (damaged; "
            f"a record no load reads, so the file loads as it is)")


def configs_flag_for(base_model: str) -> str:
    """The ``--model-config FOLDER`` a base model that is a single file naming no configs needs offline, as `lowdim
    show` says for that file itself; "" for any other base (a folder, a registered name, a lowdim merge naming its
    configs)."""
    from lowdim_sd.file_info import configs_flag  # file_info reads adapters with this module
    from lowdim_sd.model_names import config_source

    try:
        single_file = bool(base_model) and expand_user(base_model).is_file()
    except OSError:  # a header's text too long to be a path (ENAMETOOLONG): no file of ours
        return ""
    if not (single_file and base_model.lower().endswith(".safetensors")):
        return ""
    return configs_flag() if config_source(base_model, None) is None else ""


def is_sd_layer(name: str) -> bool:
    """Whether ``name`` is a Stable Diffusion layer (``unet.`` or ``text_encoder.`` and a path), as `lowdim export`
    tells them: an adapter with any other layer is not for the SD commands."""
    component, _, rest = name.partition(".")
    return component in COMPONENTS and bool(rest)


def use_prompt(meta: dict[str, str], recipe: dict) -> str:
    """The prompt the adapter trained on, quoted for its use line; PROMPT where the table cannot show a text it is
    made of as it is (a 100 KB or escape-holding prompt or looks), as MODEL stands for such a base model."""
    if not (meta.get("token") or recipe.get("prompt")):
        return quote("a photo")
    parts = [compact(recipe[key]) for key in ("prompt", "looks") if recipe.get(key)]
    return quote(learned_phrase(meta)) if all(shown_whole(part) for part in parts) else "PROMPT"


def record_rows(meta: dict[str, str], refused: set[str]) -> list[tuple[str, str, str]]:
    """(key, label, text) of the rows of what the file records besides its space and tensors, each bounded for the
    table: a record every load refuses as a short summary, any other text over ``LONGEST_SHOWN`` characters cut with
    its length."""
    rows = []
    for key, label in (("base_model", "base model"), ("token", "token"), ("adapter_name", "adapter name"),
                       ("scales", "layer scales"), ("dropout", "trained with dropout"),
                       ("lowdim_version", "made with lowdim")):
        if meta.get(key):
            # scales a load takes are one number a layer: shown whole, however many layers
            shown = summary(meta[key]) if key in refused else meta[key] if key == "scales" else bounded(meta[key])
            rows.append((key, label, shown))
    return rows


def has_bases(meta: dict[str, str], layers: list) -> bool:
    """Whether the space's frozen state is random bases made from the seed (LiDB's, VeRA's): what it, or for a stack
    any of its components, makes for the first layer differs between two seeds. A stack's component is probed alone:
    one that pins its own seed (every `personalize` file's) ignores the stack's. A fixed state (Textual Inversion's
    row selector) is no bases; where the space cannot be made here, or that layer's bases are past what a reader
    without a model makes, the file's basis checksum says."""
    import lowdim

    try:
        space = lowdim.get_registry().make_space(meta["space"], json_text.loads(meta.get("space_config") or "{}"))
        if regeneration_cost(space, layers[0]) > MAX_LAYER_REGENERATED:  # a stranger's sizes: minutes, gigabytes
            raise ValueError("no probe past the bound a reader without a model keeps")
        return any(seed_dependent(part, layers[0]) for part in unstacked(space))
    except Exception:  # a plugin's space not installed, a broken config, no layers: shown by rows of their own
        return bool(meta.get("basis_checksum"))


def unstacked(space: Space) -> Iterator[Space]:
    """The spaces that make a stack's frozen state, nested stacks opened; a space that is no stack itself."""
    from lowdim.spaces.stack import StackSpace

    if not isinstance(space, StackSpace):
        yield space
        return
    for component in space.components:
        yield from unstacked(component)


def seed_dependent(space: Space, layer: LayerSpec) -> bool:
    """Whether what ``space`` makes for ``layer`` differs between two seeds: random bases, not a fixed state."""
    import torch

    first, second = space.make_buffers(layer, 0), space.make_buffers(layer, 1)
    return any(key not in second or not torch.equal(first[key], second[key]) for key in first)


def record_problem(path: Path, meta: dict[str, str], layers: list) -> str:
    """Why every load refuses the file's dropout or scales record, or every command that takes its token that token
    ("": none does); shown, since show reads broken files too."""
    from lowdim_sd.taught_tokens import token_problem

    for key in ("dropout", "scales", EMBEDDING_LAYERS):
        if problem := refused_record(path, meta, layers, key):
            return f"{problem}: every command that loads this file refuses it"
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


# Show makes a file's bases again to check its basis_checksum as a load does: SD1.5's largest LiDB file (176 layers)
# takes 0.8 s on an idle core, 1-2 s on a busy 2-core machine. A stranger's sizes can take minutes (a basis thousands
# wide on every layer), so show starts no layer after this many seconds, nor one past the bound a reader without a
# model keeps, and says it did not check.
BASES_SECONDS = 3.0
NOT_CHECKED = ("; not checked against the basis_checksum it records here: making them again takes longer than show "
               "spends (every load checks them)")


class _OutOfTime(Exception):
    """Making the file's bases again would take longer than ``lowdim show`` spends."""


def bases_problem(path: Path, meta: dict[str, str], layers: list, stored: bool) -> str | None:
    """The load's words for why it refuses the file's basis_checksum ("": it takes it; None: show did not make the
    bases, in ``BASES_SECONDS``): its own check (``lowdim/bases_record.py``) of bases made again from the seed, as a
    load makes them; stored bases are exempt, as in a load."""
    import lowdim

    try:
        recorded = recorded_checksum(meta, path)  # one that is no checksum: damage, for stored bases too
        seed = recorded_seed(meta, path)
    except AdapterFileError as error:
        return str(error).removeprefix(f"{path}: ")
    if stored:
        return ""
    space = lowdim.get_registry().make_space(meta["space"], json_text.loads(meta.get("space_config") or "{}"))
    try:
        check_bases(AdapterFile(path, space, seed, layers, {}, None, recorded, meta),
                    layers_checksum(made_in_time(space, layers, seed)))
    except AdapterFileError as error:
        return str(error).removeprefix(f"{path}: ")
    except _OutOfTime:
        return None
    except (ValueError, RuntimeError) as error:  # a plugin's make_buffers that refuses the layer its own way
        return unmakeable_bases(space, error)
    return ""


def made_in_time(space: Space, layers: list, seed: int) -> Iterator[dict[str, Tensor]]:
    """Each layer's bases as a load makes them, one layer at a time; ``_OutOfTime`` instead of starting one after
    ``BASES_SECONDS``, or one alone past the values a reader without a model makes (``check_regeneration``)."""
    deadline = time.monotonic() + BASES_SECONDS
    for layer in layers:
        if time.monotonic() >= deadline or regeneration_cost(space, layer) > MAX_LAYER_REGENERATED:
            raise _OutOfTime
        yield regenerate(space, layer, seed)
