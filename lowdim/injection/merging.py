"""Folding adapters into the base weights and back: what ``Adapters.merge``, ``unmerge`` and
``merge_and_unload`` do.

Functions over an ``Adapters`` view, which keeps the public methods (and their docs); these use its own
helpers (``_wrappers``, ``_detach``), as its methods would.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from lowdim.errors import LowdimError
from lowdim.injection.guards import check_mergeable, tied_weights, warn_own_forward
from lowdim.injection.select import user_stacklevel
from lowdim.injection.slot import MergedNotice

if TYPE_CHECKING:
    from lowdim.injection.manager import Adapters


def merge(adapters: Adapters, name: str, part: str) -> None:
    """``Adapters.merge`` of the adapter ``name``, already resolved from the view's default."""
    if part not in ("all", "frozen"):
        raise LowdimError(f"merge part must be 'all' or 'frozen', got {part!r}")
    adapters.info(name)  # a misspelt name is an error, not a merge of nothing
    check_mergeable(name, adapters._wrappers(name))
    warn_own_forward(name, adapters._wrappers(name))
    tied = tied_weights(adapters.model)
    notice = MergedNotice(name, adapters.model)  # shared by the layers merged now: warns once for the adapter
    for wrapper in adapters._wrappers(name):
        slot = wrapper.slots[name]
        if slot.merged_scale is not None or (part == "frozen" and slot.frozen_merged_scale is not None):
            continue
        if id(wrapper.base_layer.weight) in tied:
            warnings.warn(f"layer {wrapper.layer_name} shares its weight with another module (tied embeddings?): "
                          f"merging adapter '{name}' changes that module too", stacklevel=user_stacklevel())
        factors = slot.factors_for_merge(part)
        if factors is None and part == "frozen":
            continue  # no frozen part (not a stack): nothing merged, so nothing to lock
        if factors is not None:
            factors = (factors[0].detach().clone(), factors[1].detach().clone())
            wrapper.add_to_weight(*factors, slot.scale)
        if part == "frozen":
            slot.frozen_merged_scale, slot.frozen_merged_factors = slot.scale, factors
        else:
            slot.merged_scale, slot.merged_factors = slot.scale, factors
            slot.merged_notice = notice


def unmerge(adapters: Adapters, name: str) -> None:
    """``Adapters.unmerge`` of the adapter ``name``, already resolved from the view's default."""
    adapters.info(name)
    for wrapper in adapters._wrappers(name):
        slot = wrapper.slots[name]
        if slot.merged_scale is not None:
            if slot.merged_factors is not None:
                wrapper.add_to_weight(*slot.merged_factors, -slot.merged_scale)
            slot.merged_scale = slot.merged_factors = slot.merged_notice = None
        if slot.frozen_merged_scale is not None:
            if slot.frozen_merged_factors is not None:
                wrapper.add_to_weight(*slot.frozen_merged_factors, -slot.frozen_merged_scale)
            slot.frozen_merged_scale = slot.frozen_merged_factors = None


def merge_and_unload(adapters: Adapters, names: str | Sequence[str] | None) -> nn.Module:
    """``Adapters.merge_and_unload``: ``names`` as given (None: every adapter on the model)."""
    names = adapters.names() if names is None else [names] if isinstance(names, str) else list(names)
    for name in names:  # every adapter checked before any is folded: a refusal leaves the model as it was
        adapters.info(name)
        check_mergeable(name, adapters._wrappers(name))
    for name in names:
        adapters.merge(name)
        adapters._detach(name)
    return adapters.model
