"""Adapter files: one small .safetensors per adapter, validated against its target on load.

Layout, chosen so that a LiDB adapter for SD1.5 stays under 60 KB:

* one flat 1-D tensor per param name (``A_train``, ``B_train``, ...), layers concatenated in
  the order of the layer list; shapes are not stored, the space derives them;
* optionally ``buffer.<name>`` tensors when the bases are stored instead of regenerated;
* metadata strings: format, space and config, seed, basis checksum, the layer list once
  (zlib-compressed JSON of [name, out, in]), which of those layers are nn.Embeddings (``embedding_layers``,
  a JSON list of names, ``[]`` when none), layer set, base model, identifier token.

This module writes them (``save_adapter``, ``atomic_save``); ``lowdim.file_loading`` reads them back, and its
names (``read_adapter``, ``load_adapter``, ``read_checked``, ``AdapterFile``, the format's) are importable from here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from lowdim import __version__
from lowdim.atomic import atomic_write, current_umask  # noqa: F401  (this module's API too)
from lowdim.bases_record import checksum as _checksum
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.file_fit import (
    EMBEDDING_LAYERS,
    STORE_BASES,
    validate_against,  # noqa: F401  (this module's API too)
)

# The read side (file_loading.py): its names are this module's API too, which hypernetwork, feature-file and SD
# readers (lowdim.hyper, lowdim_sd, plugins), lowdim's lazy names and users import from here.
from lowdim.file_loading import (  # noqa: F401
    BUFFER_PREFIX,
    FORMAT,
    FORMAT_VERSION,
    AdapterFile,
    load_adapter,
    path_first,
    read_adapter,
    read_checked,
)
from lowdim.file_reading import EMPTY, PICKLE_SUFFIXES, is_empty, not_a_file, refuse_pickle  # noqa: F401 (API)
from lowdim.filecheck import check_savable, check_savable_names
from lowdim.injection.adapter_info import AdapterInfo
from lowdim.injection.layer import AdapterLayer
from lowdim.injection.manager import Adapters, LayerTensors
from lowdim.layer_lists import pack_layers as _pack_layers
from lowdim.layer_lists import unpack_layers  # noqa: F401  (this module's API too)
from lowdim.safetensors_header import sort_header_metadata
from lowdim.space_packages import package_metadata
from lowdim.spaces.base import LayerSpec

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# -- writing ---------------------------------------------------------------------------------
def save_adapter(
    path: str | os.PathLike,
    model: nn.Module | Adapters,
    name: str | None = None,
    *,
    dtype: str = "fp32",
    store_bases: bool = False,
    sample: int | None = None,
    base_model: str = "",
    token: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write adapter ``name`` atomically (default: a view's own adapter, "default" for a bare module).
    ``sample`` picks one adapter of a per-sample batch."""
    path_first("save_adapter", path)
    adapters = model if isinstance(model, Adapters) else Adapters(model)
    info = adapters.info(name)
    name = info.name
    if dtype not in DTYPES:
        raise AdapterFileError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    embedding_layers = _embedding_layers(adapters, info)  # first: it refuses a layer resized under the adapter
    slots = adapters.slots(name)  # once: each lookup walks every module of the model
    params = {layer: dict(slot.tensors()) for layer, slot in slots.items()}  # as adapters.tensors(name)
    buffers = {layer: slot.buffers_dict() for layer, slot in slots.items()}  # as adapters.buffers(name)
    params = _sample_params(params, info, sample)
    check_savable(params, name, dtype, DTYPES[dtype])
    check_savable_names(info.layers, f"adapter '{name}'")
    tensors = _flatten(params, info.layers, DTYPES[dtype])
    if store_bases or info.metadata.get(STORE_BASES):
        flat = _flatten(buffers, info.layers, torch.float32)
        tensors.update({BUFFER_PREFIX + k: v for k, v in flat.items()})
    scales = [slots[layer.name].scale for layer in info.layers]
    metadata = _adapter_metadata(info, scales, buffers, dtype=dtype, base_model=base_model, token=token,
                                 extra=extra or {}, embedding_layers=embedding_layers)
    return atomic_save(tensors, metadata, Path(path))


def _sample_params(params: LayerTensors, info: AdapterInfo, sample: int | None) -> LayerTensors:
    """``params`` as one adapter: sample ``sample`` of a per-sample batch, refused where ``sample`` does not fit."""
    if info.batch is not None:
        if sample is None or not 0 <= sample < info.batch:
            raise AdapterFileError(f"adapter '{info.name}' holds {info.batch} per-sample adapters: pass "
                                   f"sample=0..{info.batch - 1}")
        return {layer: {k: v[sample] for k, v in p.items()} for layer, p in params.items()}
    if sample is not None:
        raise AdapterFileError(f"adapter '{info.name}' is one adapter, not a per-sample batch: leave sample out")
    return params


def _adapter_metadata(info: AdapterInfo, scales: list[float], buffers: LayerTensors, *, dtype: str,
                      base_model: str, token: str, extra: dict[str, Any],
                      embedding_layers: list[str]) -> dict[str, str]:
    """The file's metadata strings (see the module docstring); ``scales`` and ``buffers`` in layer order."""
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lowdim_version": __version__,
        "space": info.space.name,
        "space_config": json.dumps(info.space.config.to_dict(), separators=(",", ":")),
        "seed": str(info.seed),
        "basis_checksum": _checksum(buffers, info.layers) or "",
        "layers": _pack_layers(info.layers),
        "layer_set": info.layer_set,
        "base_model": base_model or str(info.metadata.get("base_model", "")),
        "token": token or str(info.metadata.get("token", "")),
        "dtype": dtype,
        "num_params": str(info.num_params),
        "extra": _json_extra(extra),
        "adapter_name": info.name,  # what load_adapter names it again unless told otherwise
        # Which layers are token tables: a load refuses a layer of the other kind with the same name and shape.
        EMBEDDING_LAYERS: json.dumps(embedding_layers),
    }
    if any(scale != 1.0 for scale in scales):  # set_scale is part of what the adapter does: a reload keeps it
        metadata["scales"] = json.dumps(scales)
    metadata.update(package_metadata(info.space))  # a plugin's spaces: what a machine without them must install
    # A loaded adapter keeps the record (applied by no load), so its re-save does; at 0 left out: older files unchanged.
    if dropout := info.dropout or float(info.metadata.get("dropout") or 0.0):
        metadata["dropout"] = repr(dropout)
    return metadata


def _embedding_layers(adapters: Adapters, info: AdapterInfo) -> list[str]:
    """The names of the adapter's layers whose base is an nn.Embedding, in the order of its layer list. The same walk
    refuses a layer whose base weight was resized under the adapter (a tied lm_head after resize_token_embeddings):
    the file would record the old shape."""
    wrappers = [module for module in adapters.model.modules()
                if isinstance(module, AdapterLayer) and info.name in module.slots]
    for wrapper in wrappers:
        wrapper.refuse_resized_base(info.name)
    tables = {wrapper.layer_name for wrapper in wrappers if wrapper.is_embedding}
    return [layer.name for layer in info.layers if layer.name in tables]


def atomic_save(tensors: dict[str, Tensor], metadata: dict[str, str], path: str | os.PathLike,
                replace: bool = True) -> Path:
    """safetensors write to a temp file in a hidden place beside ``path``, then an atomic rename (``atomic_write``:
    safetensors' own temp goes into that place too, so a killed save leaves only what a later run sweeps).
    Written straight from the tensors, never serialized to bytes first: a merged model's file is as big as it.
    ``replace=False``: FileExistsError where a file is at ``path`` when the write is done (``atomic_write``)."""
    path = Path(path)
    refuse_pickle(path)

    def write(temp: str) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, temp, metadata=metadata)
        sort_header_metadata(temp)  # the metadata in key order: the same contents, the same bytes in any process

    return atomic_write(path, write, replace=replace)


def _json_extra(extra: dict[str, Any]) -> str:
    """``extra`` as compact JSON; a value JSON cannot hold (a tensor, a path object) is named."""
    for key, value in extra.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise LowdimError(f"save_adapter extra['{key}']: {type(value).__name__} is not JSON (file metadata "
                              f"is text; store numbers, strings, lists or dicts)") from None
    return json.dumps(extra, separators=(",", ":"))


def _flatten(per_layer: LayerTensors, layers: list[LayerSpec], dtype: torch.dtype) -> dict[str, Tensor]:
    chunks: dict[str, list[Tensor]] = {}
    for layer in layers:
        for key, value in per_layer[layer.name].items():
            chunks.setdefault(key, []).append(value.detach().to("cpu", dtype).reshape(-1))
    return {key: torch.cat(values) for key, values in chunks.items()}


