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
from lowdim.errors import AdapterFileError
from lowdim.file_fit import format_version_problem, incomplete_metadata
from lowdim.filecheck import MAX_LAYER_REGENERATED, regeneration_cost
from lowdim.files import BUFFER_PREFIX, FORMAT_VERSION, AdapterFile, unpack_layers
from lowdim.paths import expand_user
from lowdim_sd.adapter_needs import missing_model, missing_space
from lowdim_sd.adapter_problems import (
    REFUSED_BY_EVERY_LOAD,
    record_problem,
    refused_record,
    size_problem,
    unmakeable_bases,
)
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
    """``lowdim show``'s view of a lowdim adapter: the rows its header records, then the first thing every load
    would refuse in it as a row of its own, or, where a load takes it, the command that uses it."""
    meta = header.metadata
    layers = unpack_layers(meta.get("layers", "[]"), path)
    stored = any(key.startswith(BUFFER_PREFIX) for key in header.shapes)
    remade = not stored and has_bases(meta, layers)
    # The params' own dtype: the 'dtype' metadata is a claim no load reads, so an edited one would mislead.
    dtype = header.dtype([key for key in header.shapes if not key.startswith(BUFFER_PREFIX)]) or meta.get("dtype")
    refused = {key for key in ("scales", "dropout") if meta.get(key) and refused_record(path, meta, layers, key)}
    recorded = record_rows(meta, refused)
    rows = _adapter_rows(path, meta, layers, dtype, stored, remade, recorded)
    values = _adapter_values(path, meta, layers, dtype, stored, remade, refused, recorded)
    problem, bases_checked = _first_problem(path, meta, header, layers, stored)
    if problem is not None:
        rows.insert(1, problem)
    elif not bases_checked and values["frozen bases"] is not None:
        rows = [(label, f"{text}{NOT_CHECKED}" if label == "frozen bases" else text) for label, text in rows]
        values["frozen bases"] = {"stored": stored, "checked": False}
    use = "" if problem is not None else _use_line(path, meta, layers)
    return FileInfo(path, "a lowdim adapter", rows, use, values, type="adapter")


def _adapter_rows(path: Path, meta: dict[str, str], layers: list, dtype: str | None, stored: bool, remade: bool,
                  recorded: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """The table's rows of what the file records, each bounded for the table; a problem row goes in later."""
    rows = [("space", f"{bounded(meta.get('space', '?'))} {bounded(meta.get('space_config', ''))}".strip()),
            ("layers", f"{len(layers) if 'layers' in meta else '?'}" + (f" ({bounded(meta['layer_set'])})"
                                                                          if meta.get("layer_set") else "")),
            ("trainable params", params_text(meta)),
            ("file", f"{size_text(path)}, {dtype or '?'}"),
            ("seed", meta.get("seed", "?")),
            ("frozen bases", "stored in the file" if stored else REMADE if remade else "none")]
    rows += [(label, shown) for _, label, shown in recorded]
    recipe = json_object(meta.get("extra"))
    # The network a model ships by that model (its record holds no path, docs/sd.md "Paths in files"); else as stored
    rows += [(f"recipe: {key}", bounded((key == "hypernet" and shipped_text(value)) or compact(value)))
             for key, value in recipe.items()]  # --json: whole
    return rows


def _adapter_values(path: Path, meta: dict[str, str], layers: list, dtype: str | None, stored: bool, remade: bool,
                    refused: set[str], recorded: list[tuple[str, str, str]]) -> dict[str, object]:
    """The file's fields as ``--json`` gives them: numbers as numbers, objects as objects, texts whole."""
    recipe = json_object(meta.get("extra"))
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
    return {**{label: meta[key] for key, label, shown in recorded if shown != meta[key]}, **values}


def _first_problem(path: Path, meta: dict[str, str], header: Header, layers: list,
                   stored: bool) -> tuple[tuple[str, str] | None, bool]:
    """The row of the first thing every load (or every command) would refuse in the file (None: nothing), checked
    in the order a load meets them, and whether its bases were made again and checked (False: show ran out of
    ``BASES_SECONDS``)."""
    if problem := format_version_problem(meta, "adapter", FORMAT_VERSION) or incomplete_metadata(meta):  # all refuse
        return ("problem", problem), True
    if problem := record_problem(path, meta, layers):
        return ("problem", problem), True
    if missing := missing_space(meta) or missing_model(meta.get("base_model")):  # a command would refuse it
        return missing, True
    if problem := size_problem(path, meta, header, layers):
        return ("problem", f"{problem}{REFUSED_BY_EVERY_LOAD}"), True
    checked = bases_problem(path, meta, layers, stored)  # last: it makes the bases
    return (("problem", f"{checked}{REFUSED_BY_EVERY_LOAD}") if checked else None), checked is not None


def _use_line(path: Path, meta: dict[str, str], layers: list) -> str:
    """The command that uses a file every load takes: `lowdim generate` for an SD adapter; for another model's
    adapter (generate would refuse it), the Python call that loads it."""
    if not all(is_sd_layer(layer.name) for layer in layers):
        return f"lowdim.load_adapter({str(path)!r}, model)"
    # A base model the table cannot show as it is (an escape sequence, 100 KB) is no command to copy: MODEL instead.
    base = command_word(meta.get("base_model") or "", "MODEL")
    configs = configs_flag_for(meta.get("base_model") or "")
    recipe = json_object(meta.get("extra"))
    return f"lowdim generate -m {base}{configs} -a {quote(str(path))} -p {use_prompt(meta, recipe)}"


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
