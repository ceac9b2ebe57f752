"""Reading adapter files, whose layout ``lowdim.files`` describes and writes: ``read_adapter`` checks a file on its
own or against a model, ``load_adapter`` puts it onto one, and ``read_checked`` is the first step of every reader of
a lowdim safetensors file (hypernetworks and feature files too). What a read returns (``AdapterFile``) and the
format's names are here, below the writing side, which imports them; ``lowdim.files`` names all of it too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from lowdim import functional as F
from lowdim import json_text
from lowdim.bases_record import check_bases, recorded_checksum, recorded_seed
from lowdim.bases_record import checksum as _checksum
from lowdim.bases_record import regenerate as _regenerate
from lowdim.errors import AdapterFileError, ConfigError, LowdimError
from lowdim.file_fit import (
    EMBEDDING_LAYERS,
    STORE_BASES,
    checked_embedding_layers,
    config_problem,
    format_version_problem,
    incomplete_metadata,
    refuse_other_kinds,
    saved_through_wrapper,
    validate_against,
    without_wrapper_prefix,
)
from lowdim.file_reading import EMPTY, is_empty, not_a_file, refuse_pickle
from lowdim.filecheck import (
    basis_kind,
    buffer_shapes,
    check_finite,
    check_flat,
    check_regeneration,
    checked_dropout,
    checked_scales,
    param_kind,
    refuse_meta_layers,
    unflatten,
)
from lowdim.foreign_files import describe_foreign, fix_for, not_ours
from lowdim.given_folder import folder_line
from lowdim.injection.adapter_info import AdapterInfo
from lowdim.injection.adding import add_loaded
from lowdim.injection.manager import Adapters, LayerTensors
from lowdim.injection.parallel import inner_model
from lowdim.injection.select import exact_layers
from lowdim.layer_lists import unpack_layers
from lowdim.space_packages import missing_space, missing_space_words
from lowdim.spaces.base import LayerSpec, Space

FORMAT = "lowdim.adapter"
FORMAT_VERSION = "1"
BUFFER_PREFIX = "buffer."


@dataclass
class AdapterFile:
    """An adapter read from disk, independent of any model."""

    path: Path
    space: Space
    seed: int
    layers: list[LayerSpec]
    params: LayerTensors
    stored_buffers: LayerTensors | None
    checksum: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)  # a layer's scale when it was saved; absent: 1.0
    dropout: float = 0.0  # the input dropout it was trained with: a record, which no load applies
    # layer: the name its bases were seeded from, where not its own (saved through a DataParallel: file_fit.py)
    bases_named: dict[str, str] = field(default_factory=dict)
    verify_bases: bool = True  # as read_adapter was told: lora_factors (export, merge) checks regenerated bases

    def buffers(self) -> LayerTensors:
        """The stored bases, or bases regenerated from the seed."""
        if self.stored_buffers is not None:
            return self.stored_buffers
        check_regeneration(self.space, self.layers, self.path)
        return {layer.name: _regenerate(self.space, layer, self.seed) for layer in self.layers}

    def lora_factors(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Plain LoRA (down, up) per layer, exact: what backends turn into their key formats.

        Regenerated bases are made one layer at a time (a file's sizes are all that bounds them here)
        and checked against the file's checksum exactly as loading checks them, unless the file was read
        with ``verify_bases=False``.
        """
        factors = {}
        made_any: list[bool] = []  # whether the space made any bases: a LoRA file records no checksum

        def bases(source: Callable[[LayerSpec], dict[str, Tensor]]) -> Any:
            for layer in self.layers:
                made = source(layer)
                params = {k: v.float() for k, v in self.params[layer.name].items()}
                down, up = self.space.factors(params, made)
                scale = self.scales.get(layer.name, 1.0)  # folded in, as Adapters.lora_factors does live
                factors[layer.name] = (down, up if scale == 1.0 else up * scale)
                made_any.append(bool(made))
                yield from (made[key] for key in sorted(made))

        stored = self.stored_buffers
        if stored is not None:
            for _ in bases(lambda layer: stored[layer.name]):
                pass
            return factors
        check_regeneration(self.space, self.layers, self.path)
        digest = F.basis_checksum(bases(lambda layer: _regenerate(self.space, layer, self.seed)))
        if self.verify_bases:
            check_bases(self, digest if any(made_any) else None)
        return factors

    @property
    def num_params(self) -> int:
        return sum(self.space.num_params(layer) for layer in self.layers)


def path_first(function: str, path: object) -> None:
    """One line where ``function`` was given the model first: its file's path comes first."""
    if isinstance(path, (nn.Module, Adapters)):
        raise LowdimError(f"{function}(path, model): the file's path comes first, then the model")


def read_adapter(path: str | os.PathLike, model: nn.Module | None = None, *, verify_bases: bool = True) -> AdapterFile:
    """Read and check an adapter file (layers, space, tensor sizes, finite floats); with ``model``, its layers
    are checked against the model's before any tensor is shaped or basis made (``verify_bases``: as load_adapter's,
    and it holds for the file's ``lora_factors`` too)."""
    path = Path(path)
    tensors, metadata = read_checked(path, FORMAT, "adapter")
    if problem := format_version_problem(metadata, "adapter", FORMAT_VERSION) or incomplete_metadata(metadata):
        raise AdapterFileError(f"{path}: {problem}")
    space = _recorded_space(metadata, path)
    seed = recorded_seed(metadata, path)
    layers = unpack_layers(metadata.get("layers", "[]"), path)
    adapter = AdapterFile(path, space, seed, layers, {}, None, recorded_checksum(metadata, path), metadata,
                          checked_scales(metadata.get("scales"), layers, path),
                          checked_dropout(metadata.get("dropout"), path), verify_bases=verify_bases)
    # Read by every reader, not only a load onto a model: export would share a file whose record is unreadable.
    checked_embedding_layers(metadata.get(EMBEDDING_LAYERS), layers, path)
    # A DataParallel/DDP is checked as the model it holds, where load_adapter puts adapters; a file an older lowdim
    # saved through one (its names 'module.'-prefixed) is named as that model names its layers, once it is read.
    through_wrapper = model is not None and saved_through_wrapper(layers, inner_model(model))
    if model is not None and not through_wrapper:
        validate_against(adapter, inner_model(model))
    _read_tensors(adapter, tensors, sizes_bounded=model is not None)
    if not through_wrapper or model is None:
        return adapter
    renamed = without_wrapper_prefix(adapter, verify_bases)
    refuse_other_kinds(renamed, inner_model(model))  # the shapes fit without the prefix: the kinds must too
    return renamed


def _recorded_space(metadata: dict[str, str], path: Path) -> Space:
    """The space the file's metadata records, made with its recorded options; a refusal names the file."""
    from lowdim.registry import get_registry

    registry = get_registry()
    # A plugin's space (or a stack's component) is made where that plugin is installed; a clash raises PluginError.
    if missing := missing_space(metadata, registry):
        raise AdapterFileError(f"{path}: {missing_space_words(*missing, registry)}")
    try:
        return registry.make_space(metadata["space"], _space_config(metadata, path))
    except ConfigError as error:  # an option a newer lowdim or plugin added, or a value this one refuses
        raise AdapterFileError(f"{path}: {config_problem(error)}") from None
    except (KeyError, ValueError) as error:
        raise AdapterFileError(f"{path}: incomplete or corrupted metadata ({error})") from None


def _read_tensors(adapter: AdapterFile, tensors: dict[str, Tensor], sizes_bounded: bool) -> None:
    """Shape the file's tensors into the adapter's params and stored bases, each checked finite; ``sizes_bounded``:
    a model bounds the sizes (checked already), else the file's must be sane before any basis is shaped."""
    path, space, layers = adapter.path, adapter.space, adapter.layers
    check_flat(tensors, path)
    buffer_tensors = {k[len(BUFFER_PREFIX):]: v for k, v in tensors.items() if k.startswith(BUFFER_PREFIX)}
    param_tensors = {k: v for k, v in tensors.items() if not k.startswith(BUFFER_PREFIX)}
    adapter.params = unflatten(param_tensors, layers, space.param_shapes, path, param_kind(space))
    check_finite(adapter.params, path)
    if buffer_tensors:
        if not sizes_bounded:
            check_regeneration(space, layers, path)
        adapter.stored_buffers = unflatten(buffer_tensors, layers, lambda layer: buffer_shapes(space, layer), path,
                                            basis_kind(space), BUFFER_PREFIX)
        check_finite(adapter.stored_buffers, path, "stored basis")


def _space_config(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    """The file's 'space_config' metadata: a JSON object, or one line naming the field."""
    try:
        config = json_text.loads(metadata["space_config"])
    except ValueError as error:
        raise AdapterFileError(f"{path}: the space_config in the metadata is corrupted ({error})") from None
    if not isinstance(config, dict):
        raise AdapterFileError(f"{path}: the space_config in the metadata is not a JSON object")
    return config


def read_checked(path: Path, fmt: str, kind: str, error: type[Exception] = AdapterFileError,
                 load_tensors: bool = True) -> tuple[dict, dict]:
    """(tensors, metadata) of a lowdim safetensors file of format ``fmt``, or one clear error naming ``path``;
    without ``load_tensors``, only the header is checked and the tensors come back empty."""
    refuse_pickle(path)
    if not path.is_file():
        if path.is_dir():
            raise error(folder_line(path, fmt, kind))
        # a FIFO is there, not missing (and an open of one would wait for a writer); a link loop is there too
        what = not_a_file(path)
        raise error(f"{path}: {what}; expected a .safetensors {kind} file" if what else f"{path}: no such {kind} file")
    if is_empty(path):
        raise error(f"{path}: {EMPTY}; expected a .safetensors {kind} file")
    foreign = describe_foreign(path)
    if foreign is not None:
        raise error(f"{path}: this is {foreign}; {fix_for(foreign, 'lowdim reads .safetensors files only')}")
    try:
        with safe_open(str(path), framework="pt") as handle:  # one pass: metadata, then tensors if ours
            metadata = handle.metadata() or {}
            keys = list(handle.keys())
            # Another file's tensors are never loaded: a checkpoint passed by mistake would cost gigabytes.
            ours = metadata.get("format") == fmt
            tensors = {key: handle.get_tensor(key) for key in keys} if ours and load_tensors else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as problem:
        raise error(f"{path}: not a readable safetensors file (truncated or corrupted?): {problem}") from None
    if not ours:
        raise error(not_ours(path, kind, metadata, keys))
    return tensors, metadata


def load_adapter(
    path: str | os.PathLike | AdapterFile,
    model: nn.Module | Adapters,
    name: str | None = None,
    *,
    scale: float = 1.0,
    verify_bases: bool = True,
) -> AdapterInfo:
    """Inject the adapter stored at ``path`` into ``model`` as ``name`` (default: the name it was saved under, else
    "default"), after checking it fits. Each layer's scale is the one it was saved with, times ``scale``. ``path``
    may be what ``read_adapter`` returned: checked against ``model`` the same way, and not read again."""
    path_first("load_adapter", path)
    adapters = model if isinstance(model, Adapters) else Adapters(model)
    if isinstance(path, AdapterFile):
        through = saved_through_wrapper(path.layers, adapters.model)
        adapter = without_wrapper_prefix(path, verify_bases) if through else path
        validate_against(adapter, adapters.model)
    else:
        adapter = read_adapter(path, adapters.model, verify_bases=verify_bases)
    stored = adapter.metadata.get("adapter_name", "")
    name = name or (stored if isinstance(stored, str) and stored.isidentifier() else "default")
    refuse_meta_layers(adapters.model, adapter.layers, adapter.path)
    targets = exact_layers(adapter.metadata.get("layer_set", "file"), [layer.name for layer in adapter.layers])
    info = add_loaded(adapters, name, adapter.space, targets, seed=adapter.seed, scale=scale)
    try:  # all or nothing: a load that fails leaves no half-filled adapter behind to block the next try
        _fill(adapters, name, info, adapter, scale, verify_bases)
    except BaseException:
        adapters.delete(name)
        raise
    return info


def _fill(adapters: Adapters, name: str, info: AdapterInfo, adapter: AdapterFile, scale: float,
          verify_bases: bool) -> None:
    for layer, slot in adapters.slots(name).items():  # ``scale`` weighs the adapter as it was saved
        slot.scale = scale * adapter.scales.get(layer, 1.0)
    # The dropout is how it was trained, not what it computes: a record here, applied by no load.
    info.metadata.update({k: adapter.metadata.get(k, "") for k in ("base_model", "token")}, dropout=adapter.dropout)
    if adapter.stored_buffers is not None:
        adapters.load_buffers(name, adapter.stored_buffers)
    elif verify_bases:
        check_bases(adapter, _checksum(adapters.buffers(name), info.layers))
    if adapter.bases_named and adapter.stored_buffers is not None:  # seeded from the names it was saved under:
        # to_empty makes them again from those, and a re-save stores them (its names no longer make them)
        for layer, slot in adapters.slots(name).items():
            slot.basis_seed = F.layer_seed(adapter.seed, adapter.bases_named[layer])
        info.metadata[STORE_BASES] = True
    adapters.load_tensors(name, {k: {p: v.float() for p, v in t.items()} for k, t in adapter.params.items()})
