"""What the Adapters view refuses before it changes anything: a merge that would stop halfway, a scale or
override that no forward could use, a change to an adapter whose update is already folded into the weights."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from lowdim.errors import LowdimError
from lowdim.filecheck import printable_name
from lowdim.injection.select import user_stacklevel
from lowdim.option_words import counted

if TYPE_CHECKING:
    from lowdim.injection.layer import AdapterLayer, AdapterSlot
    from lowdim.injection.manager import LayerTensors
    from lowdim.injection.slot_types import BaseLayer


def check_mergeable(name: str, wrappers: Iterable[AdapterLayer]) -> None:
    """Everything that would stop a merge of adapter ``name`` halfway, checked before any weight changes."""
    for wrapper in wrappers:
        slot = wrapper.slots[name]
        if torch.nn.utils.parametrize.is_parametrized(wrapper.base_layer, "weight"):
            raise LowdimError(f"layer {wrapper.layer_name}: its weight is parametrized (weight_norm, "
                              f"spectral_norm, ...), so a merge cannot write into it; keep adapter '{name}' "
                              f"unmerged, or remove the parametrization first")
        if problem := unwritable_weight(wrapper.base_layer):
            raise LowdimError(f"layer {wrapper.layer_name} ({type(wrapper.base_layer).__name__}) {problem}; keep "
                              f"adapter '{name}' unmerged")
        if not slot.enabled:
            raise LowdimError(f"adapter '{name}' is disabled; enable it to merge it")
        if slot.batch_size is not None:
            raise LowdimError(f"cannot merge per-sample adapter '{name}' (layer {wrapper.layer_name}): "
                              f"pick one sample first")


def unwritable_weight(base: BaseLayer) -> str | None:
    """Why a merge cannot add an update into ``base``'s weight so that the layer computes with it (None: it can).

    Each case would otherwise be a silent no-op or wrong: the old hook-based weight_norm and spectral_norm
    rebuild ``weight`` from other tensors before every call, an integer, quantized or fp8 weight has its
    scales elsewhere (a tensor subclass may hide one behind a float dtype), and an embedding's max_norm
    renormalises rows of the weight in place at each lookup.
    """
    for hook in base._forward_pre_hooks.values():
        if isinstance(hook, (WeightNorm, SpectralNorm)):
            kind = "weight_norm" if isinstance(hook, WeightNorm) else "spectral_norm"
            source = f"{hook.name}_g and {hook.name}_v" if kind == "weight_norm" else f"{hook.name}_orig"
            return (f"is under torch.nn.utils.{kind}, whose forward pre-hook rebuilds {hook.name} from "
                    f"{source} at every call, so a merge into it would be lost (torch.nn.utils.remove_"
                    f"{kind} lifts the hook)")
    weight = base.weight
    if problem := _tensor_subclass(weight):
        return problem
    if not weight.is_floating_point() or weight.dtype.itemsize == 1:  # fp8 counts as floating point in torch
        return (f"keeps its weight as {weight.dtype}: lowdim cannot add a float update to it (a quantized or "
                f"8-bit weight keeps its scales elsewhere)")
    if isinstance(base, nn.Embedding) and base.max_norm is not None:
        return (f"has max_norm={base.max_norm}: torch renormalises its rows in place at each lookup, so a merged "
                f"update would be renormalised with them and an unmerge could not take it back out")
    return None


def _tensor_subclass(weight: torch.Tensor) -> str | None:
    """Why a weight held as a tensor subclass cannot take a merge (None for a plain tensor or Parameter over one).

    torchao's AffineQuantizedTensor and optimum-quanto's QTensor report a float dtype over int storage: an in-place
    add lands in a dequantized temporary (lost) or fails deep inside. A Parameter over such a tensor has the
    subclass's type, so the exact type tells them apart; the layer's forward through it is fine (unmerged use).
    """
    if type(weight) in (torch.Tensor, nn.Parameter):
        return None
    kind = type(weight)
    return (f"holds its weight as a {kind.__module__}.{kind.__qualname__} tensor subclass (as torchao's and "
            f"optimum-quanto's quantized weights are) that reports {weight.dtype} but may store something else, "
            f"so a merge could not add to it as it is: merge before quantizing")


def warn_own_forward(name: str, wrappers: Iterable[AdapterLayer]) -> None:
    """A merge into a layer subclass with its own forward: right only if that forward computes with ``.weight``
    as stored, which lowdim cannot tell (a stand-in for a quantized layer may rescale it; many subclasses only
    log). Warned, not refused: the merge is right for most, and refusing would leave no way to merge them."""
    own = [w for w in wrappers if type(w.base_layer).forward is not _plain_forward(w.base_layer)]
    if own:
        others = f" and {counted(len(own) - 1, 'other layer')}" if len(own) > 1 else ""
        warnings.warn(f"layer {own[0].layer_name} ({type(own[0].base_layer).__name__}){others} overrides forward, "
                      f"so it may not compute with its weight as stored: merging adapter '{name}' adds the update to "
                      f"that weight; compare the merged output with the unmerged one, or keep the adapter unmerged",
                      stacklevel=user_stacklevel())


def _plain_forward(base: BaseLayer) -> object:
    plain = next(cls for cls in (nn.Linear, nn.Conv2d, nn.Embedding) if isinstance(base, cls))
    return plain.forward


def check_override(name: str, slots: dict[str, AdapterSlot], tensors: LayerTensors) -> None:
    """Every layer, every param, each of the stored shape (plus at most one leading batch dimension)."""
    missing, extra = sorted(set(slots) - set(tensors)), sorted(set(tensors) - set(slots))
    if missing or extra:  # only the side that is wrong: "missing layers []" read as one more problem
        parts = ([f"missing layers {missing[:3]}"] if missing else []) + (
            [f"unexpected layers {extra[:3]}"] if extra else [])
        raise LowdimError(f"override of adapter '{name}': {', '.join(parts)}")
    for layer, slot in slots.items():
        shapes = slot.space.param_shapes(slot.layer)
        if stray := sorted(set(tensors[layer]) - set(shapes), key=str):  # a misspelt param would be dropped unsaid
            raise LowdimError(f"override of adapter '{name}': layer {layer}: unexpected tensor "
                              f"{printable_name(str(stray[0]))} (the layer's params: {', '.join(shapes)})")
        for param, shape in shapes.items():
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
