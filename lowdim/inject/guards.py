"""What the Adapters view refuses before it changes anything: a merge that would stop halfway, a scale or
override that no forward could use, a change to an adapter whose update is already folded into the weights."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lowdim.errors import LowdimError

if TYPE_CHECKING:
    from lowdim.inject.layer import AdapterLayer, AdapterSlot
    from lowdim.inject.manager import LayerTensors


def check_mergeable(name: str, wrappers: Iterable[AdapterLayer]) -> None:
    """Everything that would stop a merge of adapter ``name`` halfway, checked before any weight changes."""
    for wrapper in wrappers:
        slot = wrapper.slots[name]
        if torch.nn.utils.parametrize.is_parametrized(wrapper.base_layer, "weight"):
            raise LowdimError(f"layer {wrapper.layer_name}: its weight is parametrized (weight_norm, "
                              f"spectral_norm, ...), so a merge cannot write into it; keep adapter '{name}' "
                              f"unmerged, or remove the parametrization first")
        if not slot.enabled:
            raise LowdimError(f"adapter '{name}' is disabled; enable it to merge it")
        if slot.batch_size is not None:
            raise LowdimError(f"cannot merge per-sample adapter '{name}' (layer {wrapper.layer_name}): "
                              f"pick one sample first")


def check_override(name: str, slots: dict[str, AdapterSlot], tensors: LayerTensors) -> None:
    """Every layer, every param, each of the stored shape (plus at most one leading batch dimension)."""
    missing, extra = sorted(set(slots) - set(tensors)), sorted(set(tensors) - set(slots))
    if missing or extra:
        raise LowdimError(f"override of adapter '{name}': missing layers {missing[:3]}, unexpected layers {extra[:3]}")
    for layer, slot in slots.items():
        for param, shape in slot.space.param_shapes(slot.layer).items():
            value = tensors[layer].get(param)
            if value is None or tuple(value.shape[-len(shape):]) != tuple(shape) or value.dim() > len(shape) + 1:
                got = None if value is None else tuple(value.shape)
                raise LowdimError(f"override of adapter '{name}': {layer}.{param} must have shape {tuple(shape)} "
                                  f"(optionally with a leading batch dimension), got {got}")


def refuse_if_merged(name: str, slot: AdapterSlot, action: str) -> None:
    if slot.merged_scale is not None or slot.frozen_merged_scale is not None:
        raise LowdimError(f"adapter '{name}' is merged (in part, for a relaxed stack); unmerge it before {action}")


def tied_weights(model: nn.Module) -> set[int]:
    """ids of parameters that more than one module holds (e.g. an LM head tied to the embeddings); one module
    held under two names holds its weight once."""
    counts: dict[int, int] = {}
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            counts[id(parameter)] = counts.get(id(parameter), 0) + 1
    return {key for key, count in counts.items() if count > 1}


def check_scale(name: str, scale: Any) -> None:
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
        raise LowdimError(f"adapter '{name}': scale must be a finite number, got {scale!r}")


def check_dropout(name: str, dropout: Any) -> None:
    # p = 1 would zero every input the update sees: an adapter that trains on nothing, never what is meant.
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise LowdimError(f"adapter '{name}': dropout must be a number in [0, 1) (the share of the adapter's input "
                          f"zeroed at random while training; 0 turns it off), got {dropout!r}")
