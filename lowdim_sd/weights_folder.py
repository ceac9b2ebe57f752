"""A diffusers folder is checked before diffusers reads it: no pickles, no shard outside the folder, no
weight file cut short, and no config that describes a far bigger model than its weights hold, or tensors of other
shapes than they hold.

diffusers falls back to a component's pickle (``*.bin``) weights, follows an index's shard paths
wherever they point, and allocates whatever a ``config.json`` describes before it finds that the
weights do not fit: a 2 KB edited config makes it try tens of GB. Each component is therefore built
on the meta device (no memory) and its size and tensor shapes compared with what the safetensors headers hold.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from lowdim import json_text
from lowdim.errors import LowdimError, first_line
from lowdim.filecheck import check_sizes
from lowdim.files import PICKLE_SUFFIXES
from lowdim.foreign_files import describe_foreign, fix_for
from lowdim.paths import expand_user
from lowdim_sd.loading import ModelLoadError, quiet_libraries
from lowdim_sd.model_paths import UNET_PREFIX
from lowdim_sd.text_encoder_files import check_readable_layout

WEIGHT_PICKLES = PICKLE_SUFFIXES
MAX_INDEX_BYTES = 64 << 20  # a shard index of SDXL's UNet is about 100 KB
MAX_CONFIG_BYTES = 1 << 20  # a config.json or model_index.json (SD1.5's largest: 2 KB)
LIBRARIES = ("diffusers", "transformers")
# Passed as None on every load, so never opened: a copy of SD1.5 often lists them with their folders deleted, or keeps
# them as the pickles diffusers saved before about 0.22.
UNUSED_PARTS = ("safety_checker", "feature_extractor", "image_encoder")
# What a model may hold beyond its stored weights (tied or recomputed tensors) before the config is
# taken to describe another, bigger model.
SLACK_FACTOR, SLACK_VALUES = 2, 1 << 20
# How far a --model-config UNet may differ from a checkpoint's and still be its architecture: the conversion
# keeps every value, so only stray extra tensors (a checkpoint's own additions) make them differ at all.
ARCHITECTURE_TOLERANCE = 0.1
# The shapes each part's config describes, by (class, config); a handful of models per process is the most seen.
MAX_DESCRIBED = 32
_DESCRIBED: dict[tuple[type, str], dict[str, tuple[int, ...]]] = {}


def check_weights_folder(folder: Path) -> None:
    """Every component's weights are safetensors, each shard index stays inside its folder, and every
    component's config describes a model no bigger than its weights, with their shapes. Only the parts a load
    reads are looked in: a pickle in a folder never opened (an old safety checker, a ``samples/`` folder) is never
    read either."""
    for part in loaded_parts(folder):
        files = sorted(entry.name for entry in part.iterdir() if entry.is_file())
        pickles = [name for name in files if name.lower().endswith(WEIGHT_PICKLES)]
        if pickles and not any(name.endswith(".safetensors") for name in files):
            raise pickle_refusal(part / pickles[0])
        for index in sorted({*part.glob("*.safetensors.index.json"), *part.glob("*.safetensors.index.*.json")}):
            check_shard_index(index)
    for part, model_class in components(folder):
        shapes = stored_shapes(sorted(part.glob("*.safetensors")))
        if shapes:
            check_config_fits(part, model_class, shapes)
            check_readable_layout(part, model_class, list(shapes))


def loaded_parts(folder: Path) -> list[Path]:
    """The part folders a load of ``folder`` reads: those its model_index.json lists with a class, but the
    UNUSED_PARTS, in name order."""
    index = read_config_json(folder / "model_index.json")
    return [folder / name for name, entry in sorted(index.items())
            if not name.startswith("_") and name not in UNUSED_PARTS and isinstance(entry, list) and len(entry) == 2
            and entry[0] is not None and (folder / name).is_dir()]


def pickle_refusal(weights: Path) -> ModelLoadError:
    return ModelLoadError(
        f"{weights}: pickle weights can run code when loaded; lowdim loads .safetensors only "
        f"(re-save the pipeline with save_pretrained(..., safe_serialization=True) where you trust it)")


def check_single_file(checkpoint: Path, config: str | None, label: str | None = None) -> None:
    """A ``--model-config`` folder (or the cached copy of a hub id) is an SD1.x pipeline listing every part it
    needs, and describes the checkpoint's architecture: its UNet about as big as the file's, no part bigger than
    the whole file. ``label`` names the option as its reader typed it."""
    from lowdim_sd.model_tree import pass_the_pipeline
    from lowdim_sd.pipeline_parts import cached_snapshot, check_config_folder

    folder = expand_user(config) if config else None
    label = label or f"--model-config {config}"
    if folder is not None and folder.is_dir() and not (folder / "model_index.json").is_file():
        fix = pass_the_pipeline(folder) or "; pass the diffusers folder of the model the checkpoint was made from"
        raise ModelLoadError(f"{label}: a folder with no model_index.json, not a diffusers pipeline{fix}")
    if config and folder is not None and not folder.is_dir():
        folder = cached_snapshot(config)  # a hub id: its cached copy, else diffusers fetches (or says offline)
    if folder is None or not (folder / "model_index.json").is_file():
        return
    check_config_folder(folder, label)
    try:
        sizes = stored_sizes([checkpoint])
    except ModelLoadError:  # unreadable: the checkpoint loader below says so in its own words
        return
    total = sum(sizes.values())
    unet = sum(size for key, size in sizes.items() if key.startswith(UNET_PREFIX))
    for part, model_class in components(folder):
        described = described_values(part, model_class)
        by_unet = part.name == "unet" and unet > 0
        held = unet if by_unet else total
        # The UNet converts one to one (same count); any other part only has to fit in the whole file.
        if (abs(described - held) > ARCHITECTURE_TOLERANCE * held if by_unet
                else described > SLACK_FACTOR * held + SLACK_VALUES):
            whose = "the file's UNet" if by_unet else "the whole file"
            raise ModelLoadError(
                f"{label} is another architecture than {checkpoint} (it describes a {model_class.__name__} of "
                f"{_count(described)} values, {whose} holds {_count(held)}); pass the folder of the model the "
                f"checkpoint was made from")


def _count(values: int) -> str:
    return f"{values / 1e6:.1f}M" if values >= 1_000_000 else f"{values:,}"


def check_shard_index(index: Path) -> None:
    """An index's shards: plain names of .safetensors files inside the index's folder, all present."""
    if index.stat().st_size > MAX_INDEX_BYTES:
        raise ModelLoadError(f"{index}: a shard index of {index.stat().st_size >> 20} MB; refusing it")
    try:
        shards = set(json_text.loads(index.read_text())["weight_map"].values())
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{index}: not a readable shard index ({first_line(error)})") from None
    for shard in sorted(shards, key=str):
        parts = Path(shard).parts if isinstance(shard, str) else ("..",)
        if not parts or Path(shard).is_absolute() or ".." in parts or "\\" in shard:
            raise ModelLoadError(f"{index}: shard path {shard!r} leaves the weights folder {index.parent}; "
                                 f"refusing it")
        if not shard.endswith(".safetensors"):
            raise ModelLoadError(f"{index}: shard '{shard}' is not a .safetensors file; lowdim loads .safetensors "
                                 f"only")
        if not (index.parent / shard).is_file():
            raise ModelLoadError(f"{index}: shard '{shard}' is missing from {index.parent}")


def components(folder: Path) -> list[tuple[Path, type[torch.nn.Module]]]:
    """(sub-folder, model class) of each diffusers/transformers model that model_index.json lists."""
    index = read_config_json(folder / "model_index.json")
    found = []
    for name, entry in index.items():
        if name.startswith("_") or name in UNUSED_PARTS or not (isinstance(entry, list) and len(entry) == 2
                                                                and entry[0] in LIBRARIES):
            continue
        part = folder / name
        model_class = getattr(importlib.import_module(entry[0]), str(entry[1]), None)
        if part.is_dir() and (part / "config.json").is_file() and isinstance(model_class, type) \
                and issubclass(model_class, torch.nn.Module):
            found.append((part, model_class))
    return found


def stored_values(files: list[Path]) -> int:
    """How many values the safetensors files hold, from their headers (no tensor is read)."""
    return sum(stored_sizes(files).values())


def stored_sizes(files: list[Path]) -> dict[str, int]:
    """Each stored tensor's name and number of values, from the files' headers (no tensor is read)."""
    return {key: math.prod(shape) for key, shape in stored_shapes(files).items()}


def stored_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Each stored tensor's name and shape, from the files' headers (no tensor is read)."""
    shapes = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                    shapes[key] = tuple(int(side) for side in handle.get_slice(key).get_shape())
        except Exception as error:  # safetensors' own error type, OSError
            raise _unreadable(path, first_line(error)) from None
    return shapes


def _unreadable(path: Path, reason: str) -> ModelLoadError:
    """A weight file safetensors refused: one cut short (an interrupted copy) in the words a single file gets."""
    try:
        foreign = describe_foreign(path)
    except OSError:
        foreign = None
    if foreign is not None:
        return ModelLoadError(f"{path}: this is {foreign}; "
                              f"{fix_for(foreign, 'copy the folder again from the model it came from')}")
    return ModelLoadError(f"{path}: not a readable safetensors file ({reason})")


def check_config_fits(part: Path, model_class: type[torch.nn.Module], stored: dict[str, tuple[int, ...]]) -> None:
    """The model ``part/config.json`` describes, built on the meta device, holds about as many values as the
    ``stored`` tensors, and each tensor of both has one shape: an edited width (a cross-attention of 64 over
    weights of 32) otherwise reaches diffusers, whose refusal advises keyword arguments that load random weights."""
    shapes = described_shapes(part, model_class)
    described, held = sum(map(math.prod, shapes.values())), sum(map(math.prod, stored.values()))
    if described > SLACK_FACTOR * held + SLACK_VALUES:
        raise ModelLoadError(f"{part / 'config.json'}: describes a {model_class.__name__} of {described} values, "
                             f"but its weights hold {held}; refusing to build it (an edited config?)")
    for key, shape in shapes.items():
        if key in stored and stored[key] != shape:
            raise ModelLoadError(f"{part / 'config.json'} does not fit its weights ({key}: config {list(shape)}, "
                                 f"file {list(stored[key])}); an edited config?")


def described_values(part: Path, model_class: type[torch.nn.Module]) -> int:
    """How many values the model ``part/config.json`` describes, built on the meta device (no memory)."""
    return sum(map(math.prod, described_shapes(part, model_class).values()))


def described_shapes(part: Path, model_class: type[torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    """Each tensor of the model ``part/config.json`` describes, with its shape, built on the meta device."""
    config = read_config_json(part / "config.json")
    check_sizes(config, part / "config.json", "config")
    # The build is half of a small model's load, and a process loads one model again and again (bench quality's
    # tasks, the ui's requests): its shapes are kept by what the config says, so an edited config builds anew.
    if "configuration_files" in config:  # transformers then reads another config, which the key would not hold
        return _built_shapes(part, model_class)
    key = (model_class, json.dumps(config, sort_keys=True))
    shapes = _DESCRIBED.get(key)
    if shapes is None:  # read once: another thread's clear between a check and a read would lose the entry
        shapes = _built_shapes(part, model_class)
        if len(_DESCRIBED) >= MAX_DESCRIBED:
            _DESCRIBED.clear()
        _DESCRIBED[key] = shapes
    return dict(shapes)


def _built_shapes(part: Path, model_class: type[torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    try:  # quiet: a config's notes (a bos id past its vocabulary) are the load's to hide or give, not this check's
        with quiet_libraries(), torch.device("meta"):
            model = _build(model_class, part)
    except LowdimError:
        raise
    except Exception as error:  # diffusers builds on the meta device too, and would fail alike, in a traceback
        raise ModelLoadError(f"{part / 'config.json'}: no {model_class.__name__} can be built from it "
                             f"({first_line(error)})") from None
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _build(model_class: type[Any], part: Path) -> torch.nn.Module:  # Any: diffusers' or transformers' own API
    if hasattr(model_class, "from_config") and hasattr(model_class, "load_config"):  # diffusers
        return model_class.from_config(model_class.load_config(part))
    config = model_class.config_class.from_pretrained(part, local_files_only=True)  # transformers
    return model_class(config)


def read_config_json(path: Path) -> dict:
    """A config or index file as a JSON object; a huge or unreadable one is one line naming it."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelLoadError(f"{path}: a config of {path.stat().st_size >> 10} KB; refusing it")
    try:
        data = json_text.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path}: not readable JSON ({first_line(error)})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a JSON object")
    return data
