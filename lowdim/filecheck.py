"""Bounds and sanity checks for files lowdim reads: nothing a file says is believed before it is checked.

A file is small, but the sizes written in it (layer widths, a compressed layer list, an encoder
config) decide how much lowdim allocates. Every such size is checked against a sane bound, and
against the model or the file's own tensors, before anything is built from it; tensors must hold
finite floats. Each refusal is one line naming the file and the layer, param or tensor.
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lowdim import json_text
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.spaces.base import LayerSpec, Space
from lowdim.tensor_kinds import TensorKind, other_misfit_cause

MAX_FEATURES = 1 << 16  # in/out width of one layer: 65536, far above any diffusion model's (Flux: 12288)
MAX_LAYERS = 1 << 16  # layers in one file (SD1.5's largest layer set: 264; SDXL: about 2,000)
MAX_NAME = 512  # characters of one layer name
# What no layer name in a file may hold: control characters (C0, DEL, C1) and Unicode's line and paragraph
# separators, which would rewrite a terminal or split a printed line. torch takes any other module name (a
# ModuleDict key "to q", a peft adapter named "my adapter"), and so do lowdim's files.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Nor an invisible format character (Unicode category Cf: a bidi override or isolate, a zero-width space, a BOM),
# which makes a name print as another one. No module name holds one: a Python identifier takes no Cf character.
MAX_INFLATED = 16 << 20  # bytes a compressed metadata field may inflate to (SD1.5's layer list: about 20 KB)
# Basis values regenerated from a seed where no model bounds them (export), per layer (256 MB in float64;
# SD1.5's largest LiDB layer: 1 M) and per file (generated one layer at a time, so this bounds time).
MAX_LAYER_REGENERATED = 1 << 25
MAX_REGENERATED = 1 << 29
MAX_DEPTH = 512  # layers or blocks in a config (ViT-g: 40; SD's UNet: 2 per block)
MAX_SIZE = 1 << 24  # any other integer in a config (widths, vocabulary, bank size, image size)
DEPTH_KEY = re.compile(r"layers|depth|blocks", re.IGNORECASE)
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def inflate(data: bytes, what: str, path: Path, limit: int = MAX_INFLATED) -> bytes:
    """zlib-decompress at most ``limit`` bytes: a compressed field cannot become a memory bomb."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, limit)
    except zlib.error as error:
        raise AdapterFileError(f"{path}: the {what} in the metadata is corrupted ({error})") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise AdapterFileError(f"{path}: the {what} in the metadata inflates past {limit >> 20} MB or is cut short; "
                               f"refusing it")
    return raw


def layer_name_problem(name: str) -> str | None:
    """Why a file cannot hold ``name`` as a layer name (None: it can). Only what is unsafe to print or cannot be a
    module path is refused: torch forbids an empty part, so ``a..b`` or a leading dot comes from no model."""
    if not name or len(name) > MAX_NAME:
        return f"is empty or longer than {MAX_NAME} characters"
    if CONTROL.search(name):
        return "holds a control character or a line break"
    if problem := format_character_problem(name):
        return problem
    if "" in name.split("."):
        return "has an empty part (a leading, trailing or doubled dot)"
    return None


def format_character_problem(name: str, allowed: frozenset[str] = frozenset()) -> str | None:
    """Why ``name`` may not be printed as a name: it holds an invisible format character (Unicode Cf) other than
    ``allowed``, named by its code point (None: it holds none). Shared by every name a file gives that lowdim prints
    (layers, identities)."""
    if invisible := next((char for char in name if unicodedata.category(char) == "Cf" and char not in allowed), None):
        what = unicodedata.name(invisible, "")
        return (f"holds the invisible format character U+{ord(invisible):04X}" + (f" ({what})" if what else "")
                + ", which makes it print as another name")
    return None


def printable_name(name: str, longest: int = 120) -> str:
    """``name`` quoted and escaped for one printed line, cut to about ``longest`` characters."""
    text = ascii(name)
    return text if len(text) <= longest else text[:longest - longest // 6] + "...'"


def check_savable_names(layers: Iterable[LayerSpec], what: str) -> None:
    """Layer names a file may hold (``checked_layers`` refuses any other when the file is read back); checked when
    an adapter is added, so no run trains layers it cannot save, and again when a file is written."""
    for layer in layers:
        if problem := layer_name_problem(layer.name):
            raise LowdimError(f"{what} layer {printable_name(layer.name)}: its name {problem}, so no lowdim file can "
                              f"store it; rename that module")


def checked_layers(entries: Any, path: Path, error: type[LowdimError] = AdapterFileError) -> list[LayerSpec]:
    """[[name, out, in], ...] from a file as LayerSpecs, each size within the sane bounds."""
    if not isinstance(entries, list):
        raise error(f"{path}: the layer list in the metadata is not a list")
    if len(entries) > MAX_LAYERS:
        raise error(f"{path}: the metadata lists {len(entries)} layers, more than the {MAX_LAYERS} lowdim accepts")
    layers = []
    names: set[str] = set()
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
            raise error(f"{path}: a layer list entry is not [name, out, in]: {ascii(entry)[:80]}")
        name, out, inp = entry
        if problem := layer_name_problem(name):
            raise error(f"{path}: layer name {printable_name(name)} in the metadata {problem}")
        if name in names:  # a second entry would take the first one's place, and its values the first one's
            raise error(f"{path}: layer {name} is listed twice in the metadata")
        names.add(name)
        for size in (out, inp):
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_FEATURES:
                raise error(f"{path}: layer {name} has size {out!r}x{inp!r} in the metadata; each size must be an "
                            f"integer in [1, {MAX_FEATURES}]")
        layers.append(LayerSpec(name, out, inp))
    return layers


def check_flat(tensors: Mapping[str, Tensor], path: Path) -> None:
    """Adapter tensors are flat 1-D floats, one per param kind."""
    for key, value in tensors.items():
        if value.dtype not in FLOATS:
            raise AdapterFileError(f"{path}: tensor '{key}' holds {str(value.dtype).removeprefix('torch.')}, "
                                   f"not floats")
        if value.dim() != 1:
            raise AdapterFileError(f"{path}: tensor '{key}' is {value.dim()}-D {tuple(value.shape)}, where a lowdim "
                                   f"adapter stores 1-D (one flat tensor per param, layers concatenated)")


def unflatten(flat: dict[str, Tensor], layers: list[LayerSpec], shapes_of: Callable[[LayerSpec], Mapping[str, Any]],
              path: Path, what: str,
              prefix: str = "") -> dict[str, dict[str, Tensor]]:
    """Per layer, its chunk of each flat tensor. ``what``: what each of them is ("a param of space 'lidb'"), for
    the line that names one the space has none of; ``prefix``: how the file names them (``buffer.``)."""
    shapes = {layer.name: shapes_of(layer) for layer in layers}
    # Where ``what`` is a plugin space's (param_kind's), a misfit may not be damage: said after each line.
    other = f" {what.other_cause}" if isinstance(what, TensorKind) and what.other_cause else ""
    # A stray tensor is named first: else a stray buffer.* would read as bases stored, and one stored basis missing.
    known = {key for layer_shapes in shapes.values() for key in layer_shapes}
    if stray := sorted(set(flat) - known):
        raise AdapterFileError(f"{path}: unexpected tensor {ascii(prefix + stray[0])}: it is not {what}{other}")
    offsets = dict.fromkeys(flat, 0)
    result: dict[str, dict[str, Tensor]] = {}
    for layer in layers:
        result[layer.name] = {}
        for key, shape in shapes[layer.name].items():
            if key not in flat:
                raise AdapterFileError(f"{path}: tensor '{prefix}{key}' is missing{other}")
            size = int(torch.Size(shape).numel())
            chunk = flat[key][offsets[key] : offsets[key] + size]
            if chunk.numel() != size:
                raise AdapterFileError(f"{path}: tensor '{prefix}{key}' is too short for layer {layer.name}{other}")
            result[layer.name][key] = chunk.reshape(shape)
            offsets[key] += size
    leftover = [key for key, value in flat.items() if offsets[key] != value.numel()]
    if leftover:
        raise AdapterFileError(f"{path}: tensor(s) {', '.join(prefix + key for key in leftover)} hold more values than "
                               f"the layers need{other}")
    return result


def param_kind(space: Space) -> str:
    """What each of an adapter file's param tensors is, as ``unflatten``'s line naming a stray one says it (a load and
    ``lowdim show`` word it alike)."""
    return TensorKind(f"a param of space '{space.name}'", other_misfit_cause(space))


def basis_kind(space: Space) -> str:
    """What each of an adapter file's ``buffer.*`` tensors is, as ``unflatten``'s line naming a stray one says it."""
    return TensorKind(f"a frozen basis of space '{space.name}'", other_misfit_cause(space))


def check_finite(per_layer: Mapping[str, Mapping[str, Tensor]], path: Path, what: str = "param") -> None:
    """Every value finite; the first layer and param that is not are named."""
    for layer, tensors in per_layer.items():
        for key, value in tensors.items():
            if not bool(torch.isfinite(value).all()):
                raise AdapterFileError(f"{path}: layer {layer} {what} '{key}' holds NaN or Inf values (a diverged "
                                       f"run?); refusing it")


def buffer_shapes(space: Space, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
    """The shapes of ``space.make_buffers(layer)`` (made once: call ``check_regeneration`` first)."""
    return {key: tuple(value.shape) for key, value in space.make_buffers(layer, 0).items()}


def regeneration_cost(space: Space, layer: LayerSpec) -> int:
    """An upper bound on the basis values ``make_buffers`` makes for ``layer``, from shapes alone: bases map
    the layer's sides to its trained params (LiDB: out x a + b x in <= (out + in) x (a + b); VeRA alike).

    A stack is charged its parts' sum and a space that makes no bases (LoRA) nothing: charged a stack's whole
    params, SD1.5's rank-relaxed personalization (LiDB beside a rank-4 LoRA) came to 2.2e9, four times the file
    limit, for 22 M values made."""
    from lowdim.spaces.stack import StackSpace

    if isinstance(space, StackSpace):
        return sum(regeneration_cost(part, layer) for part in space.components)
    if type(space).make_buffers is Space.make_buffers:
        return 0
    params = sum(int(torch.Size(shape).numel()) for shape in space.param_shapes(layer).values())
    return (layer.out_features + layer.in_features) * max(params, 1)


def check_regeneration(space: Space, layers: list[LayerSpec], path: Path) -> None:
    """The bases regenerated for ``layers`` stay within sane bounds, checked before any is made: no model
    bounds them when a file is read on its own (export), so its stated sizes alone must be sane."""
    total = 0
    for layer in layers:
        cost = regeneration_cost(space, layer)
        if cost > MAX_LAYER_REGENERATED:
            raise AdapterFileError(f"{path}: layer {layer.name} ({layer.out_features}x{layer.in_features}) would need "
                                   f"about {cost} regenerated basis values, more than the {MAX_LAYER_REGENERATED} "
                                   f"lowdim makes for one layer; refusing the sizes in its metadata")
        total += cost
    if total > MAX_REGENERATED:
        raise AdapterFileError(f"{path}: its layers would need about {total} regenerated basis values, more than the "
                               f"{MAX_REGENERATED} lowdim makes for one file; refusing the sizes in its metadata")


def check_sizes(config: Any, path: Path, where: str) -> None:
    """Every integer of a (nested) config within a sane bound, depths within a tighter one."""
    for key, value in _integers(config, ""):
        bound = MAX_DEPTH if DEPTH_KEY.search(key) else MAX_SIZE
        if value > bound:  # negative values are sentinels (-1: none), never sizes
            raise LowdimError(f"{path}: {where} {printable_name(key)} is {_number_text(value)}; lowdim accepts at "
                              f"most {bound} here")


def _number_text(value: int) -> str:
    """An integer from a file for one printed line: JSON takes up to 4,300 digits, said by their count past 40."""
    try:
        digits = str(value)
    except ValueError:  # past Python's own limit on converting an integer to text (a config built in Python)
        return "a number of thousands of digits"
    return digits if len(digits) <= 40 else f"a number of {len(digits):,} digits"


def _integers(value: Any, key: str) -> list[tuple[str, int]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [(key, value)]
    if isinstance(value, Mapping):
        return [found for k, v in value.items() for found in _integers(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list):
        return [found for v in value for found in _integers(v, key)]
    return []


def checked_dropout(text: str | None, path: Path) -> float:
    """An adapter file's 'dropout' metadata (absent: 0), a number in [0, 1) or one error naming the file."""
    try:
        value = 0.0 if text is None else float(text)
    except ValueError:
        value = float("nan")  # refused below with what the file holds
    if not 0 <= value < 1:
        raise AdapterFileError(f"{path}: the dropout in the metadata is not a number in [0, 1), got {text!r}")
    return value


def checked_scales(text: str | None, layers: list[LayerSpec], path: Path) -> dict[str, float]:
    """An adapter file's 'scales' metadata (absent: none), one finite number per layer, or one error naming the file."""
    if text is None:
        return {}
    try:
        scales = json_text.loads(text)
    except ValueError:
        scales = None
    if not (isinstance(scales, list) and len(scales) == len(layers) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scales)):
        raise AdapterFileError(f"{path}: the scales in the metadata are not one finite number per layer "
                               f"({len(layers)} layers)")
    return {layer.name: float(scale) for layer, scale in zip(layers, scales, strict=True)}


# -- what a model or an adapter must have before a file is written from it or loaded into it ----------------


def check_savable(params: Mapping[str, Mapping[str, Tensor]], name: str, dtype: str,
                  torch_dtype: torch.dtype) -> None:
    """Params with values to write, which ``dtype`` can hold: a value past fp16's range would be stored as inf,
    and the file then refused on every load."""
    for layer, tensors in params.items():
        for key, value in tensors.items():
            if value.is_meta:
                raise AdapterFileError(f"adapter '{name}' layer {layer}: its params are on the meta device and hold "
                                       f"no values to save; inject it into a model with real weights, or with "
                                       f"device='cpu'")
            if not torch.isfinite(value.detach().to(torch_dtype)).all():
                advice = "retrain" if torch_dtype == torch.float32 else "save in fp32, or retrain"
                raise AdapterFileError(f"adapter '{name}' layer {layer} param '{key}': values beyond {dtype}'s range, "
                                       f"or NaN/Inf (a diverged run?); {advice}")


def refuse_meta_layers(model: torch.nn.Module, layers: Iterable[LayerSpec], path: Path) -> None:
    """A layer on the meta device has no weights to add to, and an adapter's values put there would be lost."""
    for layer in layers:
        module = model.get_submodule(layer.name)
        weight = getattr(module, "base_layer", module).weight
        if weight.is_meta and _offloaded(model, layer.name):
            raise AdapterFileError(f"{path}: layer {layer.name} of the model is on the meta device because "
                                   f"accelerate's offload hooks hold its weights (sequential CPU offload, or a "
                                   f"device_map that offloads), so lowdim cannot adapt it: "
                                   f"accelerate.hooks.remove_hook_from_submodules(model) (diffusers: "
                                   f"pipe.remove_all_hooks()) puts them back; offloading whole models (diffusers: "
                                   f"pipe.enable_model_cpu_offload()) works with lowdim's adapters")
        if weight.is_meta:
            raise AdapterFileError(f"{path}: layer {layer.name} of the model is on the meta device (no weights): "
                                   f"load the model's weights first, then the adapter")


def _offloaded(model: torch.nn.Module, name: str) -> bool:
    """Whether accelerate's hooks (``_hf_hook``) sit on the layer, the layer inside it or a module holding it."""
    parts = name.split(".")
    holders = [model.get_submodule(".".join(parts[:end])) for end in range(len(parts) + 1)]
    layer = holders[-1]
    return any(hasattr(module, "_hf_hook") for module in (*holders, getattr(layer, "base_layer", layer)))
