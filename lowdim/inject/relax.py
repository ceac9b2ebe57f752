"""Rank relaxation (HyperDreamBooth §4.3): an adapter frozen into a stack beside a new trainable space."""

from __future__ import annotations

import torch

from lowdim.inject.manager import AdapterInfo, Adapters
from lowdim.inject.select import exact_layers
from lowdim.spaces.base import Space


def relax_rank(
    adapters: Adapters, name: str, new_name: str, trainable: Space, *, merge_frozen: bool = True,
    seed: int | None = None,
) -> AdapterInfo:
    """HyperDreamBooth §4.3: freeze adapter ``name`` and add a trainable space beside it.

    The result is one stack adapter ``new_name`` (the old one is deleted). With ``merge_frozen``
    the frozen part is folded into the base weights, as the paper does before fast finetuning;
    export still sees the whole stack. ``seed`` seeds the trainable part's init (default: the old
    adapter's seed); the frozen part keeps the old adapter's seed and bases either way.
    """
    from lowdim.spaces.stack import StackSpace

    old = adapters.info(name)
    stack = StackSpace.of([(old.space, old.seed)], trainable, merge_frozen=merge_frozen)
    targets = exact_layers(old.layer_set, [layer.name for layer in old.layers])
    frozen = adapters.tensors(name)
    scale = next(iter(adapters.slots(name).values())).scale
    adapters.delete(name)
    # The stack keeps the old scale, so the model's output is unchanged by the relaxation.
    info = adapters.add(new_name, stack, targets, seed=old.seed if seed is None else seed, batch=old.batch,
                        scale=scale)
    with torch.no_grad():
        for layer, slot in adapters.slots(new_name).items():
            for key, value in stack.component_keys(0, frozen[layer]).items():
                slot.params[key].copy_(value)
    if stack.config.merge_frozen:  # the stack's config is what a saved file records
        adapters.merge(new_name, part="frozen")
    return info
