"""Whether an adapter file fits a model: every layer it names is one of the model's adaptable layers, of the
same shape. A refusal blames the file ("was made for X and does not fit this model") only when the model is
another one; when it is this model seen through another library's wrapper (peft's LoRA layers, a PeftModel, any
module holding it), it names that wrapper and the way in. A file an older lowdim saved through nn.DataParallel,
DDP or torch.compile (its layers named ``module.0``, ``_orig_mod.0``) loads onto the model inside with that prefix
dropped.

Also what a reader says of a file another lowdim wrote: a format version it does not read, or a config option it does
not know (a newer lowdim's or plugin's), in one wording for the loaders and for ``lowdim show``. Every adapter and
hypernetwork file lowdim has written records ``format_version`` "1", so an absent one is no older lowdim's file;
``lowdim_version`` has been 0.1.0 in every release so far, which is why it decides nothing here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from torch import nn

from lowdim import json_text
from lowdim.errors import AdapterFileError, ConfigError
from lowdim.filecheck import MAX_INFLATED
from lowdim.injection.matching import EMBEDDING, LAYER_TYPES, layer_kind
from lowdim.injection.select import candidate_layers
from lowdim.injection.select_words import kind_words, peft_layer_words, what_matched

if TYPE_CHECKING:
    from lowdim.file_loading import AdapterFile
    from lowdim.spaces.base import LayerSpec

SHOWN = 5  # problems listed in one line; the rest are counted
# The metadata key naming a file's nn.Embedding layers (a JSON list); every file save_adapter writes has it.
EMBEDDING_LAYERS = "embedding_layers"
# A layer's kind, as a refusal names it: a file records only whether a layer is a token table, and a linear
# layer's update fits a 1x1 convolution's of the same shape (the same map per pixel).
KIND_WORDS = {"linear": "a linear layer (nn.Linear)", "conv1x1": "a 1x1 convolution (nn.Conv2d)",
              EMBEDDING: "an nn.Embedding (a token table)"}
MAX_SHOWN_NAME = 100  # characters of a name the file's record holds and its layer list does not, in a refusal
MADE_FOR = {True: "an nn.Embedding (a token table)", False: "a linear or 1x1 convolution layer"}
# What folds peft's adapters into the weights and leaves plain layers (diffusers runs peft under its LoRA loading).
FOLD_PEFT = ("fold peft's adapters in first (peft: model.merge_and_unload(); diffusers: pipe.fuse_lora(), then "
             "pipe.unload_lora_weights()), then load this adapter")


def validate_against(adapter: AdapterFile, model: nn.Module) -> None:
    """Every layer of the file must be an adaptable layer of the model with the same shape; one line otherwise."""
    layers = adapter.layers
    if not misfits(layers, model):
        refuse_other_kinds(adapter, model)
        return
    if cause := wrapper_words(layers):  # it fits neither as saved nor without the prefix: say what the latter lacks
        layers = _unprefixed(layers, wrapper_prefix(layers))
    shapes = {name: tuple(module.weight.shape[:2])
              for name, module in candidate_layers(model, (*LAYER_TYPES, EMBEDDING))}
    misfit = misfits(layers, model)
    # named_modules, not get_submodule: peft's wrappers forward attribute lookups to the model they wrap.
    modules = dict(model.named_modules())
    wrapped = [layer for layer in misfit if layer.name in modules and peft_layer_words(modules[layer.name])]
    if len(wrapped) == len(misfit):
        raise AdapterFileError(_wrapped_by_peft(adapter, wrapped, modules[wrapped[0].name]))
    if not any(layer.name in modules for layer in misfit) and (way_in := _way_in(layers, modules, model)):
        raise AdapterFileError(f"{adapter.path}: {cause}{way_in}")
    problems = [_problem(layer, shapes, modules, model) for layer in misfit]
    shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
    base = adapter.metadata.get("base_model") or "another model"
    if cause:
        raise AdapterFileError(f"{adapter.path}: {cause}it was made for {base}: {shown}")
    raise AdapterFileError(f"{adapter.path} was made for {base} and does not fit this model: {shown}")


def refuse_other_kinds(adapter: AdapterFile, model: nn.Module) -> None:
    """A file whose layers fit ``model``'s by name and shape is refused where one of them is an nn.Embedding in the
    model and was not in the file's, or the reverse: the update would go to a token table, or a table's to a
    layer. A file that does not record its tables (an older lowdim's, or another tool's) is not checked."""
    tables = embedding_layers(adapter)
    if tables is None:
        return
    kinds = {name: layer_kind(module) for name, module in candidate_layers(model, (*LAYER_TYPES, EMBEDDING))}
    other = [layer.name for layer in adapter.layers if (kinds.get(layer.name) == EMBEDDING) != (layer.name in tables)]
    if not other:
        return
    first, rest = other[0], other[1:]
    more = f"; {len(rest)} more of its layers are of another kind in the model: {', '.join(rest[:SHOWN])}" + \
        (", ..." if len(rest) > SHOWN else "") if rest else ""
    raise AdapterFileError(f"{adapter.path}: layer {first} is {KIND_WORDS[str(kinds[first])]} in the model; the file "
                           f"was made for {MADE_FOR[first in tables]} of that name and shape{more}")


def embedding_layers(adapter: AdapterFile) -> set[str] | None:
    """The names of the file's layers that were nn.Embeddings where it was made, as the layers are named now (a file
    saved through a DataParallel recorded them with its prefix); None where the file does not say."""
    names = checked_embedding_layers(adapter.metadata.get(EMBEDDING_LAYERS), adapter.layers, adapter.path,
                                     adapter.bases_named)
    if names is None:
        return None
    now = {adapter.bases_named.get(layer.name, layer.name): layer.name for layer in adapter.layers}
    return {now[name] for name in names}


def checked_embedding_layers(text: object, layers: list[LayerSpec], path: object,
                             saved_as: dict[str, str] | None = None) -> list[str] | None:
    """A file's 'embedding_layers' record (None: it has none), a JSON list of its layers' names as saved
    (``saved_as``: a layer's name in the file where the load renamed it), or one error naming the file."""
    if text is None:
        return None
    where = f"{path}: the '{EMBEDDING_LAYERS}' in the metadata"
    if not isinstance(text, str) or len(text) > MAX_INFLATED:  # it lists fewer names than the layer list holds
        raise AdapterFileError(f"{where} is not a short JSON list of layer names")
    try:
        names = json_text.loads(text)
    except ValueError as error:
        raise AdapterFileError(f"{where} is corrupted ({error})") from None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise AdapterFileError(f"{where} is not a JSON list of layer names")
    known = {(saved_as or {}).get(layer.name, layer.name) for layer in layers}
    if stray := [name for name in names if name not in known]:
        raise AdapterFileError(f"{where} names {stray[0][:MAX_SHOWN_NAME]!r}, which is none of the file's layers")
    return names


def _wrapped_by_peft(adapter: AdapterFile, wrapped: list[LayerSpec], module: nn.Module) -> str:
    """The file fits, but peft has put its own layers where the file's go."""
    what = peft_layer_words(module)
    more = f" (and {len(wrapped) - 1} more of the file's layers)" if len(wrapped) > 1 else ""
    return f"{adapter.path}: the model's layer {wrapped[0].name}{more} is {what}: {FOLD_PEFT}"


def _way_in(layers: list[LayerSpec], modules: dict[str, nn.Module], model: nn.Module) -> str | None:
    """Where the file's layers are when the model holds the one they were made for under one prefix (a PeftModel's
    ``base_model.model.``, a container's key); None when no single prefix holds them all.

    Told, not followed: an adapter loaded under the prefix would be registered, and later saved, under the
    wrapper's names, which fit no unwrapped model."""
    first = layers[0].name
    prefixes = {name[: -len(first)] for name in modules if name.endswith("." + first)}
    found = [prefix for prefix in prefixes if all(prefix + layer.name in modules for layer in layers)]
    if len(found) != 1:
        return None
    prefix = found[0]
    inner = prefix.rstrip(".")
    if inner == "base_model.model" and callable(getattr(model, "get_base_model", None)):
        where = "model.get_base_model() (peft's PeftModel wraps the model; its forward runs lowdim's adapters)"
    else:
        where = f"model.get_submodule('{inner}')"
    return (f"the file's layers are in this model under '{prefix}' (its layers are named '{prefix}{first}', the "
            f"file's '{first}'): load into {where}")


def _problem(layer: LayerSpec, shapes: dict[str, tuple[int, ...]], modules: dict[str, nn.Module],
             model: nn.Module) -> str:
    """One layer that does not fit, in a few words."""
    shape = shapes.get(layer.name)
    if shape is not None:
        return f"{layer.name} (file {layer.out_features}x{layer.in_features}, model {shape[0]}x{shape[1]})"
    module = modules.get(layer.name)
    if module is None:
        return f"{layer.name} (missing in model)"
    if peft_layer_words(module):
        return f"{layer.name} (in the model: peft's {type(module).__name__}, which lowdim cannot adapt)"
    if layer_kind(module) is None:
        return f"{layer.name} (in the model: {kind_words(module)})"
    if layer.name.endswith(".base_layer"):  # the layer inside a wrapper, lowdim's or another library's
        return f"{layer.name} (in the model: {what_matched(model, layer.name, module)})"
    return f"{layer.name} (in the model: the out_proj of an nn.MultiheadAttention, which reads that weight directly)"


UNKNOWN_OPTION = "unknown option(s)"  # how SpaceConfig.from_dict starts the refusal of an option it does not know


def format_version_problem(metadata: Mapping[str, str], kind: str, reads: str) -> str:
    """Why a ``kind`` file ('adapter', 'hypernetwork') whose header is ``metadata`` is not read by a lowdim that reads
    format version ``reads`` ("" when it is). A newer layout read as this one's could load wrong without an error."""
    found = metadata.get("format_version")
    if found == reads:
        return ""
    if found is not None and _newer(found, reads):
        return f"{kind} format version {found}; this lowdim reads version {reads}: upgrade lowdim"
    stated = "has no format version, which every lowdim writes" if found is None else \
        f"format version {found!r}, which no lowdim writes"
    return f"{kind} {stated} (the file was edited or made by another tool); this lowdim reads version {reads}"


# What every adapter file lowdim has written records, and no load makes do without: the space, its config and the
# layer list (a file without one would read as no layers, its tensors then each "not a param" of the space).
REQUIRED_ADAPTER_FIELDS = ("space", "space_config", "layers")


def incomplete_metadata(metadata: Mapping[str, str]) -> str:
    """"incomplete metadata (no 'space')" for the first of ``REQUIRED_ADAPTER_FIELDS`` an adapter's header lacks
    ("" where it has them all), as the hypernetwork reader says of its own: a missing record named as missing, not as
    a space no plugin provides or a stray tensor."""
    missing = next((field for field in REQUIRED_ADAPTER_FIELDS if field not in metadata), None)
    return f"incomplete metadata (no '{missing}')" if missing else ""


def _newer(found: str, reads: str) -> bool:
    """Whether ``found`` is a larger whole number than ``reads``, both in ASCII digits ("²".isdigit() holds). Compared
    as text, never through int(): a file's version may have more digits than Python converts (4,300)."""
    if not all(text.isascii() and text.isdecimal() for text in (found, reads)):
        return False
    found, reads = found.lstrip("0"), reads.lstrip("0")  # "0002" is 2, as int() reads it
    return (len(found), found) > (len(reads), reads)


def config_problem(error: ConfigError, plugins: bool = True) -> str:
    """``error`` (a stored config this lowdim refuses), with what to do when it names an option this lowdim does
    not know: such a file comes from a newer lowdim (or, with ``plugins``, a newer version of the plugin that
    provides its space), and only upgrading reads it."""
    text = str(error)
    if UNKNOWN_OPTION not in text:
        return text
    if plugins:
        return (f"{text}; the file may come from a newer lowdim or another version of the plugin that provides its "
                f"space: upgrade lowdim (or that plugin)")
    return f"{text}; the file may come from a newer lowdim: upgrade lowdim"


# -- files an older lowdim saved through nn.DataParallel / DDP / torch.compile ------------------------------------
# How nn.DataParallel and DDP ("module"), and torch.compile ("_orig_mod"), name the model they hold; stacked in any
# order ("_orig_mod.module.") when one wraps the other.
WRAPPER_PARTS = ("module", "_orig_mod")
# An adapter whose frozen bases were seeded from other names than its layers' own: a re-save stores them.
STORE_BASES = "store_bases"


def misfits(layers: list[LayerSpec], model: nn.Module) -> list[LayerSpec]:
    """The layers that are not an adaptable layer of ``model`` with the same shape."""
    shapes = {name: tuple(module.weight.shape[:2])
              for name, module in candidate_layers(model, (*LAYER_TYPES, EMBEDDING))}
    return [layer for layer in layers if shapes.get(layer.name) != (layer.out_features, layer.in_features)]


def wrapper_prefix(layers: list[LayerSpec]) -> str:
    """The wrappers' prefix every one of ``layers`` starts with (``module.``, ``_orig_mod.``, or a stack of them);
    "" where they share none."""
    prefix = ""
    while layers:
        longer = next((prefix + part + "." for part in WRAPPER_PARTS
                       if all(layer.name.startswith(prefix + part + ".") for layer in layers)), None)
        if longer is None:
            break
        prefix = longer
    return prefix


def saved_through_wrapper(layers: list[LayerSpec], model: nn.Module) -> bool:
    """Whether ``layers`` are those of a file an older lowdim saved through a DataParallel/DDP (before acba417) or
    a compiled model (every name ``module.``- or ``_orig_mod.``-prefixed, as the wrapper showed them) for ``model``:
    they do not fit it as they are, and do without the prefix. A model with a real ``module`` submodule that they
    fit keeps them as they are."""
    prefix = wrapper_prefix(layers)
    return bool(prefix) and bool(misfits(layers, model)) and not misfits(_unprefixed(layers, prefix), model)


Named = TypeVar("Named")  # what a layer name keys: its tensors, or its scale


def without_wrapper_prefix(adapter: AdapterFile, verify_bases: bool = True) -> AdapterFile:
    """``adapter`` with its layers named as the model inside the wrapper names them, as accelerate and peft strip
    ``module.`` from state dicts. Each frozen basis was seeded from the name the file recorded, so unless the file
    stored them, they are made from those names here (checked against the file's checksum unless
    ``verify_bases`` is False, as ``load_adapter`` takes it) and kept as stored."""
    from lowdim.bases_record import check_bases, checksum, regenerate
    from lowdim.filecheck import check_regeneration

    prefix = wrapper_prefix(adapter.layers)
    named = {layer.name: layer.name.removeprefix(prefix) for layer in adapter.layers}

    def renamed(values: dict[str, Named]) -> dict[str, Named]:
        return {named.get(key, key): value for key, value in values.items()}

    stored = adapter.stored_buffers
    if stored is None:
        check_regeneration(adapter.space, adapter.layers, adapter.path)
        stored = {layer.name: regenerate(adapter.space, layer, adapter.seed) for layer in adapter.layers}
        if verify_bases:  # refused as loading refuses: other bases, or none recorded where bases were made
            check_bases(adapter, checksum(stored, adapter.layers))
        stored = stored if any(stored.values()) else None  # a space without bases (LoRA) regenerates nothing
    return replace(adapter, layers=_unprefixed(adapter.layers, prefix), params=renamed(adapter.params),
                   stored_buffers=None if stored is None else renamed(stored), scales=renamed(adapter.scales),
                   bases_named={new: old for old, new in named.items()})


def _unprefixed(layers: list[LayerSpec], prefix: str) -> list[LayerSpec]:
    return [replace(layer, name=layer.name.removeprefix(prefix)) for layer in layers]


def wrapper_words(layers: list[LayerSpec]) -> str:
    """Why a file fits no model, where its names carry a wrapper's prefix ("" where they do not)."""
    prefix = wrapper_prefix(layers)
    if not prefix:
        return ""
    return (f"its layer names start with '{prefix}' (saved through nn.DataParallel, DDP or torch.compile), and "
            f"without it they do not fit this model either; ")
