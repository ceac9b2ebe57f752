"""Rank relaxation (HyperDreamBooth §4.3): an adapter frozen into a stack beside a new trainable space."""

from __future__ import annotations

import torch

from lowdim.errors import LowdimError
from lowdim.injection.adapter_info import AdapterInfo
from lowdim.injection.adding import add
from lowdim.injection.inference import normal_tensors
from lowdim.injection.manager import Adapters, LayerTensors
from lowdim.injection.select import LayerSet, exact_layers
from lowdim.spaces.base import Space


def relax_rank(
    adapters: Adapters, name: str, new_name: str, trainable: Space, *, merge_frozen: bool = True,
    seed: int | None = None, dropout: float = 0.0,
) -> AdapterInfo:
    """HyperDreamBooth §4.3: freeze adapter ``name`` and add a trainable space beside it.

    The result is one stack adapter ``new_name`` (the old one is deleted). With ``merge_frozen``
    the frozen part is folded into the base weights, as the paper does before fast finetuning;
    export still sees the whole stack. ``seed`` seeds the trainable part's init (default: the old
    adapter's seed); the frozen part keeps the old adapter's seed and bases either way. ``dropout`` is the new
    adapter's (``Adapters.add``): it drops the input of the update the forward adds, so the trainable part's alone
    with ``merge_frozen`` and the whole stack's without. Each layer keeps its scale, so the model's output is
    unchanged; if the stack cannot be built, the old adapter is put back as it was.
    """
    from lowdim.spaces.stack import StackSpace

    old = adapters.info(name)
    slots = adapters.slots(name)
    if not all(slot.enabled for slot in slots.values()):
        raise LowdimError(f"adapter '{name}' is disabled: enable it first, or there is nothing to relax")
    if merge_frozen and old.batch is not None:
        raise LowdimError(f"adapter '{name}' holds {old.batch} per-sample adapters, which cannot be merged: pass "
                          f"merge_frozen=False, or relax one sample's adapter")
    stack = StackSpace.of([(old.space, old.seed)], trainable, merge_frozen=merge_frozen)
    targets = exact_layers(old.layer_set, [layer.name for layer in old.layers])
    frozen = {layer: {k: v.detach().clone() for k, v in tensors.items()} for layer, tensors in
              adapters.tensors(name).items()}
    scales = {layer: slot.scale for layer, slot in slots.items()}
    adapters.delete(name)
    try:
        info = adapters.add(new_name, stack, targets, seed=old.seed if seed is None else seed, batch=old.batch,
                            dropout=dropout)
    except Exception:
        _put_back(adapters, old, targets, frozen, scales)
        raise
    info.metadata.update(old.metadata)  # the base model and token a loaded file named
    with torch.no_grad():
        for layer, slot in adapters.slots(new_name).items():
            slot.scale = scales[layer]
            for key, value in stack.component_keys(0, frozen[layer]).items():
                slot.params[key].copy_(value)
    if stack.config.merge_frozen:  # the stack's config is what a saved file records
        adapters.merge(new_name, part="frozen")
    return info


def _put_back(adapters: Adapters, old: AdapterInfo, targets: LayerSet, frozen: LayerTensors,
              scales: dict[str, float]) -> None:
    """Adapter ``old`` as it was before ``relax_rank`` deleted it: its layers, trained tensors and scales."""
    with normal_tensors():  # as Adapters.add; its rank was warned about once, when the user injected it
        restored = add(adapters, old.name, old.space, targets, seed=old.seed, scale=1.0, batch=old.batch,
                       device=None, dropout=old.dropout, rank_chosen=False)
    restored.metadata.update(old.metadata)
    adapters.load_tensors(old.name, frozen)
    for layer, slot in adapters.slots(old.name).items():
        slot.scale = scales[layer]
