"""Adding an adapter to a model: what ``Adapters.add`` (and ``inject``) does. Its arguments are checked, then
every slot is built and checked by the space before the model is touched, so a refused layer leaves no half
adapter behind.

A function over an ``Adapters`` view, which keeps the public method (and its docs), as ``merging`` does; it uses
the view's own state (``_infos``, ``_given``), as the method would.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lowdim import functional as F
from lowdim.errors import LowdimError
from lowdim.filecheck import check_savable_names
from lowdim.injection import guards
from lowdim.injection.adapter_info import AdapterInfo
from lowdim.injection.guards import check_scale
from lowdim.injection.inference import makes_normal_tensors
from lowdim.injection.layer import AdapterLayer, AdapterSlot
from lowdim.injection.parallel import refuse_adding_through_ddp
from lowdim.injection.select import LayerSet, select_layers, user_stacklevel
from lowdim.injection.slot_types import BaseLayer
from lowdim.injection.space_checks import (
    check_buffers_come_from_the_seed,
    check_space_on_layer,
    check_stacked_factors,
)
from lowdim.injection.state_guard import guard_loads
from lowdim.injection.wrapping import module_holders, wrap
from lowdim.option_words import counted, either
from lowdim.spaces.base import LayerSpec, Space
from lowdim.spaces.stack import StackSpace

if TYPE_CHECKING:
    from lowdim.injection.manager import Adapters

log = logging.getLogger("lowdim")


def add(adapters: Adapters, name: str, space: Space, targets: LayerSet | str | Sequence[str], *, seed: int,
        scale: float, batch: int | None, device: torch.device | str | None, dropout: float,
        rank_chosen: bool = True) -> AdapterInfo:
    """``Adapters.add`` on the view ``adapters``: the keywords are the method's. ``rank_chosen`` is False where
    a file's shapes are loaded (``load_adapter``): a rank above a layer's is then noted, not warned about, as its
    advice (a lower rank) is for whoever chose it."""
    _check_add_arguments(adapters, name, space, targets, seed=seed, scale=scale, batch=batch, dropout=dropout)
    layer_set = targets if isinstance(targets, LayerSet) else LayerSet.from_patterns(targets)
    info = AdapterInfo(name, space, int(seed), [], layer_set.name, batch, dropout=float(dropout))
    chosen = select_layers(adapters.model, layer_set)
    if not chosen:
        raise LowdimError(f"adapter '{name}': targets {layer_set.name or '(none)'!r} select no layer")
    # Refused now, not when the file is written: no run trains layers it cannot save.
    check_savable_names([LayerSpec(layer_name, 1, 1) for layer_name, _ in chosen], f"adapter '{name}'")
    slots, wasted = _build_slots(info, chosen, scale=scale, device=device)
    holders = module_holders(adapters.model)
    for layer_name, slot in slots:
        wrapper = wrap(adapters.model, layer_name, holders)
        wrapper.slots[name] = slot.train(wrapper.training)  # in the mode the model is in, as a peft layer is
    guard_loads(adapters.model)
    if wasted and rank_chosen:
        _warn_wasted_rank(wasted, name)
    if info.notes:
        log.info("adapter '%s': notes on %s, e.g. %s", name, counted(len(info.notes), "layer"), info.notes[0])
    adapters._infos[name] = info
    return info


def _check_add_arguments(adapters: Adapters, name: str, space: Space, targets: object, *, seed: object,
                         scale: float, batch: object, dropout: float) -> None:
    """Every refusal of ``add``'s arguments, before any layer is looked at."""
    if not isinstance(name, str) or not name.isidentifier():
        raise LowdimError(f"adapter name {name!r} must be a Python identifier (letters, digits, _)")
    if name in adapters._infos:
        raise LowdimError(f"an adapter named '{name}' already exists on this model; give this one another "
                          f"name (name=...), or delete('{name}') the old one first")
    if not isinstance(space, Space):
        raise LowdimError(f"adapter '{name}': expected a Space instance (lowdim.get_space(...)), got {space!r}")
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise LowdimError(f"adapter '{name}': batch must be a positive integer or None, got {batch!r}")
    if not isinstance(seed, int):
        raise LowdimError(f"adapter '{name}': seed must be an integer, got {seed!r}")
    check_scale(name, scale)
    guards.check_dropout(name, dropout)
    refuse_adding_through_ddp(adapters._given, name)
    if not isinstance(targets, (LayerSet, str, list, tuple)):
        raise LowdimError(f"adapter '{name}': targets must be a LayerSet, a pattern string ('*attn*.to_q') or a "
                          f"list of patterns, got {targets!r}")


def _build_slots(info: AdapterInfo, chosen: Sequence[tuple[str, BaseLayer]], *, scale: float,
                 device: torch.device | str | None) -> tuple[list[tuple[str, AdapterSlot]], list[str]]:
    """One slot per chosen layer, each checked by the space, with the model still untouched: a layer the space
    refuses must not leave half an adapter behind. Fills ``info``'s layers and notes; also returns one note per
    layer whose rank exceeds what the layer holds."""
    slots = []
    wasted: list[str] = []
    for index, (layer_name, module) in enumerate(chosen):
        layer = _spec(layer_name, module)
        slot = _new_slot(info.space, layer, info.seed, info.batch, check_seeding=index == 0)
        slot.to(device=device or _weight(module).device)
        slot.scale, slot.dropout = scale, info.dropout
        slots.append((layer_name, slot))
        info.layers.append(layer)
        if note := info.space.describe(layer):
            info.notes.append(note)
            wasted.extend(notes_by_kind(info.space, layer)[0][:1])
    return slots, wasted


def _warn_wasted_rank(wasted: list[str], name: str) -> None:
    """Layers trained and saved for nothing: said where a Python user sees it, not only in a log."""
    count = counted(len(wasted), "layer")
    who = either("", f"adapter '{name}': ")  # the command names its adapter for itself, not for the user
    warnings.warn(f"{who}on {count} the rank exceeds what the layer holds, e.g. {wasted[0]}; the "
                  f"optimizer trains those extra params and the file stores them all the same: a lower rank "
                  f"saves both", stacklevel=user_stacklevel())


@makes_normal_tensors  # as Adapters.add
def add_loaded(adapters: Adapters, name: str, space: Space, targets: LayerSet, *, seed: int,
               scale: float) -> AdapterInfo:
    """``add`` for ``load_adapter``: the file's rank, which whoever loads it did not choose."""
    return add(adapters, name, space, targets, seed=seed, scale=scale, batch=None, device=None, dropout=0.0,
               rank_chosen=False)


def adjusted_notes(info: AdapterInfo) -> list[str]:
    """``info``'s notes but those inject already warned about (a rank above the layer's): an option adjusted to
    fit, such as LiDB's a and b clamped to a narrow layer."""
    return [note for layer in info.layers for note in notes_by_kind(info.space, layer)[1]]


def notes_by_kind(space: Space, layer: LayerSpec) -> tuple[list[str], list[str]]:
    """``space``'s notes on ``layer`` (a stack's, part by part): first those of a part whose rank exceeds the
    layer's, whose extra params add nothing (LoRA does not clamp its rank: peft does not, and a file's shapes must
    not depend on the layer), then the rest, such as LiDB's a and b clamped to fit, which waste nothing."""
    if isinstance(space, StackSpace):
        parts = [notes_by_kind(component, layer) for component in space.components]
        return [note for part in parts for note in part[0]], [note for part in parts for note in part[1]]
    note = space.describe(layer)
    if note is None:
        return [], []
    if space.rank(layer) > min(layer.out_features, layer.in_features):
        return [note], []
    return [], [note]


def _new_slot(space: Space, layer: LayerSpec, seed: int, batch: int | None, check_seeding: bool = False) -> AdapterSlot:
    # Built and checked on the CPU whatever the default device: the checks need real values, which the tensors
    # a `with torch.device("meta"):` block makes have not (a bare "Tensor.item() cannot be called on meta tensors"),
    # and the space draws from a CPU generator. The caller moves the slot to the layer's device, meta included.
    with torch.device("cpu"):
        return _new_cpu_slot(space, layer, seed, batch, check_seeding)


def _new_cpu_slot(space: Space, layer: LayerSpec, seed: int, batch: int | None, check_seeding: bool) -> AdapterSlot:
    generator = torch.Generator(device="cpu").manual_seed(F.layer_seed(seed, layer.name + "#init"))
    params = space.init_params(layer, generator)
    buffers = space.make_buffers(layer, F.layer_seed(seed, layer.name))
    check_space_on_layer(space, layer, params, buffers)
    if check_seeding:  # once an adapter: a second draw of one layer's frozen state costs little
        check_buffers_come_from_the_seed(space, layer, buffers, F.layer_seed(seed, layer.name))
        check_stacked_factors(space, layer, params, buffers)
    if batch is not None:
        params = {k: v.unsqueeze(0).repeat(batch, *([1] * v.dim())) for k, v in params.items()}
    buffers = {k: v.to(torch.float32) for k, v in buffers.items()}
    return AdapterSlot(space, layer, params, buffers, basis_seed=F.layer_seed(seed, layer.name))


def _weight(module: BaseLayer | AdapterLayer) -> Tensor:
    return module.base_layer.weight if isinstance(module, AdapterLayer) else module.weight


def _spec(layer_name: str, module: BaseLayer | AdapterLayer) -> LayerSpec:
    weight = _weight(module)
    return LayerSpec(layer_name, weight.shape[0], weight.shape[1])
