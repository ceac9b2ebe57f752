"""Gradient checkpointing that keeps ``Adapters.override`` in the recomputation.

A checkpointed block runs its forward a second time during the backward, after ``with adapters.override(...)``
has exited: the layers then run without the tensors they ran with (torch's CheckpointError when the tensors
saved differ, silently wrong gradients when they match). The function made here notes, at each checkpointed
call, the tensors every slot of the model is overridden with, and puts them back for that call's recomputation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from lowdim.injection.layer import AdapterSlot


def checkpointing_with_overrides(model: nn.Module) -> Callable[..., Any]:
    """``checkpoint(function, *args)``, torch's non-reentrant checkpoint for the adapters ``model`` carries at each
    call (made before or after ``inject``): diffusers takes it as
    ``enable_gradient_checkpointing(gradient_checkpointing_func=...)``."""

    def checkpoint(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # The slots the checkpointed part holds, with their tensors as they are in this forward.
        part = function if isinstance(function, nn.Module) else model
        held = [(slot, slot.override) for slot in part.modules() if isinstance(slot, AdapterSlot)]
        return torch.utils.checkpoint.checkpoint(
            function, *args, use_reentrant=False, context_fn=lambda: (contextlib.nullcontext(), _overridden(held)),
            **kwargs)

    return checkpoint


@contextlib.contextmanager
def _overridden(held: list[tuple[AdapterSlot, Any]]) -> Iterator[None]:
    now = [(slot, slot.override) for slot, _ in held]
    try:
        for slot, tensors in held:
            slot.override = tensors
        yield
    finally:
        for slot, tensors in now:
            slot.override = tensors
