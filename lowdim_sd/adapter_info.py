"""``lowdim show`` on a lowdim adapter: its space, layers, seed and recipe, read from the header alone."""

from __future__ import annotations

import math
from pathlib import Path
from shlex import quote

from lowdim import json_text
from lowdim.errors import ConfigError, LowdimError, PluginError
from lowdim.file_fit import config_problem, format_version_problem
from lowdim.filecheck import check_regeneration, checked_dropout, checked_scales, printable_name
from lowdim.files import BUFFER_PREFIX, FORMAT_VERSION, unpack_layers
from lowdim_sd.file_info_parts import (
    FileInfo,
    Header,
    compact,
    json_object,
    number,
    parsed_json,
    size_text,
    space_object,
)
from lowdim_sd.prompt_words import with_looks


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
    rows = [("space", f"{meta.get('space', '?')} {meta.get('space_config', '')}".strip()),
            ("layers", f"{len(layers)}" + (f" ({meta['layer_set']})" if meta.get("layer_set") else "")),
            ("trainable params", f"{int(meta.get('num_params') or 0):,}"),
            ("file", f"{size_text(path)}, {dtype or '?'}"),
            ("seed", meta.get("seed", "?")),
            ("frozen bases", "stored in the file" if stored else REMADE if remade else "none")]
    for key, label in (("base_model", "base model"), ("token", "token"), ("adapter_name", "adapter name"),
                       ("scales", "layer scales"), ("dropout", "trained with dropout"),
                       ("lowdim_version", "made with lowdim")):
        if meta.get(key):
            rows.append((label, summary(meta[key]) if key in refused else meta[key]))
    recipe = json_object(meta.get("extra"))
    rows += [(f"recipe: {key}", compact(value)) for key, value in recipe.items()]
    values = {"space": space_object(meta.get("space"), meta.get("space_config", "")),
              "layers": {"count": len(layers), "set": meta.get("layer_set") or None},
              "trainable params": int(meta.get("num_params") or 0),
              "file": {"bytes": path.stat().st_size, "dtype": dtype}, "seed": number(meta.get("seed")),
              **({"layer scales": meta["scales"] if "scales" in refused else parsed_json(meta["scales"], None)}
                 if meta.get("scales") else {}),
              **({"trained with dropout": number(meta["dropout"])} if meta.get("dropout") else {}),
              "frozen bases": {"stored": stored} if stored or remade else None,
              **{f"recipe: {key}": value.strip() if isinstance(value, str) else value
                 for key, value in recipe.items()}}
    if problem := format_version_problem(meta, "adapter", FORMAT_VERSION):  # every load refuses it
        rows.insert(1, ("problem", problem))
        return FileInfo(path, "a lowdim adapter", rows, "", values)
    if problem := record_problem(path, meta, layers):
        rows.insert(1, ("problem", problem))
        return FileInfo(path, "a lowdim adapter", rows, "", values)
    if missing := missing_space(meta) or missing_model(meta.get("base_model")):  # a command would refuse it
        rows.insert(1, missing)
        return FileInfo(path, "a lowdim adapter", rows, "", values)
    if problem := size_problem(meta, header, layers) or stray_basis(path, meta, header, layers):
        rows.insert(1, ("problem", f"{problem}: every command that loads this file refuses it"))
        return FileInfo(path, "a lowdim adapter", rows, "", values)
    base = quote(meta["base_model"]) if meta.get("base_model") else "MODEL"
    phrase = learned_phrase(meta)
    prompt = phrase if meta.get("token") or recipe.get("prompt") else "a photo"  # the prompt it trained on
    return FileInfo(path, "a lowdim adapter", rows,
                    f"lowdim generate -m {base} -a {quote(str(path))} -p {quote(prompt)}", values)


def has_bases(meta: dict[str, str], layers: list) -> bool:
    """Whether the space's frozen state is random bases made from the seed (LiDB's, VeRA's): what it makes for the
    first layer differs between two seeds. A fixed one (Textual Inversion's row selector) is no bases; where the
    space cannot be made here, the file's basis checksum says."""
    import torch

    import lowdim

    try:
        space = lowdim.get_registry().make_space(meta["space"], json_text.loads(meta.get("space_config") or "{}"))
        first, second = space.make_buffers(layers[0], 0), space.make_buffers(layers[0], 1)
    except Exception:  # a plugin's space not installed, a broken config, no layers: shown by rows of their own
        return bool(meta.get("basis_checksum"))
    return any(key not in second or not torch.equal(first[key], second[key]) for key in first)


def missing_space(meta: dict[str, str]) -> tuple[str, str] | None:
    """The row saying why the file's space, or a stack's component, cannot be used here (None: it can): two
    plugins claim it, plugins are switched off (LOWDIM_NO_PLUGINS), or no installed plugin provides it. The
    file names the package (a first-party plugin's is known without)."""
    import lowdim
    from lowdim.space_packages import missing_space as first_missing

    registry = lowdim.get_registry()
    try:
        missing = first_missing(meta, registry)
    except PluginError as error:  # two plugins claim a component's name: what every load says
        return "problem", str(error)
    if missing is None:
        return None
    name, package = missing
    if problem := registry.space_unavailable(name, package):
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
    if name not in FIRST_PARTY_MODELS or name in lowdim.get_registry().backends or Path(name).expanduser().exists():
        return None
    return "needs", (f"the plugin that provides model '{name}' (package {FIRST_PARTY_MODELS[name]}), which is not "
                     f"installed here: pip install {FIRST_PARTY_MODELS[name]}")


def record_problem(path: Path, meta: dict[str, str], layers: list) -> str:
    """Why every load refuses the file's dropout or scales record ("": it does not); shown, since show reads broken
    files too."""
    for key in ("dropout", "scales"):
        if problem := refused_record(path, meta, layers, key):
            return f"{problem}: every command that loads this file refuses it"
    return ""


def refused_record(path: Path, meta: dict[str, str], layers: list, key: str) -> str:
    """The load's words for why it refuses the file's 'dropout' or 'scales' record ("": it takes it)."""
    try:
        if key == "dropout":
            checked_dropout(meta.get("dropout"), path)
        else:
            checked_scales(meta.get("scales"), layers, path)
    except LowdimError as error:
        return str(error).removeprefix(f"{path}: ")
    return ""


def summary(text: str, longest: int = 60) -> str:
    """A refused record as one short escaped line (a scales list nested a thousand deep is no table cell), with
    its length where it is cut; --json gives the text itself."""
    shown = printable_name(text, longest)
    return shown if shown == ascii(text) else f"{shown} ({len(text):,} characters)"


def size_problem(meta: dict[str, str], header: Header, layers: list) -> str:
    """What the header already shows a load would refuse ("": nothing): a param tensor missing, or holding more or
    fewer values than the space's shapes on the file's layers need."""
    import lowdim

    try:
        config = json_text.loads(meta.get("space_config") or "{}")
    except ValueError as error:
        return f"the space_config in the metadata is corrupted ({error})"
    if not isinstance(config, dict):
        return "the space_config in the metadata is not a JSON object"
    try:
        space = lowdim.get_registry().make_space(meta["space"], config)
        needed: dict[str, int] = {}
        for layer in layers:
            for key, shape in space.param_shapes(layer).items():
                needed[key] = needed.get(key, 0) + math.prod(shape)
    except ConfigError as error:  # an option a newer lowdim or plugin added: say to upgrade, as a load does
        return f"its space '{meta.get('space')}' cannot be made from the config it records ({config_problem(error)})"
    except (LowdimError, KeyError, ValueError, TypeError) as error:
        return f"its space '{meta.get('space')}' cannot be made from the config it records ({error})"
    stored = {key: math.prod(shape) for key, shape in header.shapes.items() if not key.startswith(BUFFER_PREFIX)}
    for key, count in needed.items():
        if stored.get(key) != count:
            held = "is missing" if key not in stored else f"holds {stored[key]:,} values"
            return f"tensor '{key}' {held}, where its {len(layers)} layers need {count:,}"
    extra = sorted(set(stored) - set(needed))
    return f"tensor '{extra[0]}' is none the space '{space.name}' has" if extra else ""


def stray_basis(path: Path, meta: dict[str, str], header: Header, layers: list) -> str:
    """The load's words for a ``buffer.*`` tensor that is no frozen basis of the space ("": none), for a file whose
    space and params ``size_problem`` passed: it would otherwise show as bases stored in it. The first layer's
    bases name the space's kinds; every layer's are made (bounded as the load bounds them) only to confirm one."""
    import lowdim

    found = sorted(key.removeprefix(BUFFER_PREFIX) for key in header.shapes if key.startswith(BUFFER_PREFIX))
    if not found:
        return ""
    space = lowdim.get_registry().make_space(meta["space"], json_text.loads(meta.get("space_config") or "{}"))
    try:
        known = set(space.make_buffers(layers[0], 0)) if layers else set()
        if any(key not in known for key in found):
            check_regeneration(space, layers, path)
            known = {key for layer in layers for key in space.make_buffers(layer, 0)}
    except LowdimError as error:  # sizes no load makes bases for: its words
        return str(error).removeprefix(f"{path}: ")
    except (ValueError, RuntimeError) as error:  # a plugin's make_buffers that refuses the layer its own way
        return f"its space '{space.name}' cannot make the frozen bases of its layers ({error})"
    stray = [key for key in found if key not in known]
    return (f"unexpected tensor {ascii(BUFFER_PREFIX + stray[0])}: it is not a frozen basis of space "
            f"'{space.name}'") if stray else ""
