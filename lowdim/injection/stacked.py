"""The factors of every same-shape adapted layer, made at once for one training forward.

Why: at batch 1 a GPU training step is bound by the host launching kernels, not by the kernels
(docs/benchmarks.md). Each adapted layer's forward makes its own factors (LiDB: a product with each of
its two bases; any space in a half-precision model: two casts) and autograd launches as many again
backward: about 700 of a LiDB step's 4,800 launches on SD1.5's 176 layers. Layers of one shape and one
space can make theirs as one batched product over a leading dimension of layers, so a step launches
per shape (seven in SD1.5), not per layer.

Inside ``stacked_factors(model)`` each training adapter slot under ``model`` whose space allows it
(``Space.stacks_layers``) and that shares its group (space, shapes, dtypes) with another slot takes its
factors from the group's product. Frozen tensors (bases, a stack's frozen params) are copied into a
stack once and kept while they are unchanged; only the trainable params are stacked per call. The slots
keep their own tensors: a view of the stack has another memory layout, and a product with it rounds
differently, so a model after the context would compute other last bits than before it and than a
reload of its own file. The price is a second copy of the frozen bases (about 80 MB for LiDB a=100,
b=50 on SD1.5's 176 layers). A batched product rounds differently from a single one too, so inside the
context the factors equal the per-layer ones within float rounding, not bit for bit.

The factors live for one forward: a model whose layers are recomputed during backward (gradient
checkpointing) would recompute different tensors than the forward, so it is refused.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError
from lowdim.injection.layer import AdapterLayer, AdapterSlot
from lowdim.injection.slot_types import BufferDict, ParamDict
from lowdim.spaces.base import Tensors

Factors = tuple[Tensor, Tensor]


@contextmanager
def stacked_factors(model: nn.Module) -> Iterator[int]:
    """Within, the training slots under ``model`` use factors made per group of same-shape layers.

    Yields how many slots do. Without gradients it changes nothing: slots that do not train keep
    their factors between calls already (``AdapterSlot.call_factors``).
    """
    given: list[AdapterSlot] = []
    try:
        if torch.is_grad_enabled():
            _refuse_checkpointing(model)
            for group in _groups(model):
                frozen = _frozen_stack(group)
                if not frozen.worth_stacking:
                    continue
                for slot, factors in zip(group.slots, group.factors(frozen), strict=True):
                    _give(slot, factors)
                    given.append(slot)
        yield len(given)
    finally:
        for slot in given:
            _give(slot, None)


def _give(slot: AdapterSlot, factors: Factors | None) -> None:
    # Straight into the instance dict: nn.Module.__setattr__ checks for parameters, buffers and modules
    # first, which twice per slot and step is host time a GPU step waits on, for a plain attribute.
    slot.__dict__["step_factors"] = factors


class _Group:
    """Slots with one space and the same tensor shapes and dtypes, whose layers compute in ``dtype``
    (the key's first entry)."""

    def __init__(self, key: tuple, slots: list[AdapterSlot]) -> None:
        self.key, self.slots = key, slots
        self.dtype: torch.dtype = key[0]
        self.space = slots[0].space
        self.trainable_only = slots[0].frozen_merged_scale is not None  # a stack's frozen part is merged
        first = slots[0].params
        self.trainable = [name for name, param in first.items() if param.requires_grad]
        self.frozen_params = [name for name, param in first.items() if not param.requires_grad]

    def compute(self, params: Tensors, buffers: Tensors) -> Factors:
        if self.trainable_only:
            return self.space.trainable_factors(params, buffers)
        return self.space.factors(params, buffers)

    def factors(self, frozen: FrozenStack) -> list[Factors]:
        params = {name: torch.stack([slot.params[name] for slot in self.slots]) for name in self.trainable}
        down, up = self.compute({**params, **frozen.params}, frozen.buffers)
        return list(zip(down.to(self.dtype).unbind(), up.to(self.dtype).unbind(), strict=True))

    def worth_stacking(self) -> bool:
        """False when each slot's factors are its params as they are: nothing per layer to save.
        Asked once per frozen stack, on meta tensors, so it launches nothing."""
        first = self.slots[0]
        if any(param.dtype != self.dtype for param in first.params.values()):
            return True  # a cast per factor and layer
        params = {name: torch.empty_like(value, device="meta") for name, value in first.params.items()}
        buffers = {name: torch.empty_like(value, device="meta") for name, value in first.buffers_dict().items()}
        down, up = self.compute(params, buffers)
        given = [id(value) for value in params.values()]
        return id(down) not in given or id(up) not in given


class FrozenStack:
    """Copies of a group's frozen params and buffers, stacked; the slots' own tensors stay as they are."""

    def __init__(self, group: _Group) -> None:
        slots = group.slots
        self.params = {name: torch.stack([slot.params[name].detach() for slot in slots])
                       for name in group.frozen_params}
        self.buffers = {name: torch.stack([slot.buffers_dict()[name] for slot in slots])
                        for name in slots[0].buffer_names}
        self.signature = _signature(group)
        self.worth_stacking = group.worth_stacking()
        # The tensors the signature names, held so that their ids cannot be reused while this lives.
        self.sources = [tensor for slot in slots for tensor in _frozen_tensors(slot, group)]


def _frozen_stack(group: _Group) -> FrozenStack:
    """The group's frozen stack, remade when a slot joined or left or a frozen tensor changed (in place,
    moved or replaced); kept on the group's first slot between calls."""
    kept = getattr(group.slots[0], "_frozen_stack", None)
    if kept is None or kept.signature != _signature(group):
        kept = FrozenStack(group)
        group.slots[0]._frozen_stack = kept
    return kept


def _frozen_tensors(slot: AdapterSlot, group: _Group) -> list[Tensor]:
    # Annotated, not cast(): a call per slot per step. A slot registers no None in either dict.
    params: ParamDict = slot.params._parameters  # type: ignore[assignment]
    buffers: BufferDict = slot._buffers  # type: ignore[assignment]
    return [params[name] for name in group.frozen_params] + list(buffers.values())


def _signature(group: _Group) -> tuple:
    return group.key, *((id(slot), *((id(tensor), tensor._version) for tensor in _frozen_tensors(slot, group)))
                        for slot in group.slots)


def _groups(model: nn.Module) -> Iterator[_Group]:
    members: dict[tuple, list[AdapterSlot]] = {}
    for layer in _adapter_layers(model):
        dtype = layer.base_layer.weight.dtype  # what the layer computes in, so what its factors are cast to
        for slot in layer.slots.values():
            if slot.enabled and slot.merged_scale is None and slot.override is None:
                key = _group_key(slot, dtype)
                if key is not None:
                    members.setdefault(key, []).append(slot)
    for key, slots in members.items():  # one group's slots share shapes: one look says if they are per sample
        if len(slots) > 1 and slots[0].batch_size is None and slots[0].space.stacks_layers():
            yield _Group(key, slots)


class _Walk(NamedTuple):
    made: int  # AdapterLayer.made when the model was walked
    layers: list[weakref.ref]  # its adapted linear layers
    flagged: list[tuple[str, weakref.ref]]  # its modules with a gradient_checkpointing flag, by name


# model -> its _Walk: walking SD1.5's UNet module by module costs milliseconds of host time, every call. No
# wrapper made since means none can have joined the model; the checkpointing flags are read at every call,
# since transformers and diffusers switch them on modules that define them from construction.
_WALKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _walk(model: nn.Module) -> _Walk:
    kept = _WALKS.get(model)
    if kept is None or kept.made != AdapterLayer.made:
        layers, flagged = [], []
        for name, module in model.named_modules():
            if isinstance(module, AdapterLayer):
                if not module.is_embedding:
                    layers.append(weakref.ref(module))
            elif hasattr(module, "gradient_checkpointing"):
                flagged.append((name, weakref.ref(module)))
        kept = _Walk(AdapterLayer.made, layers, flagged)
        _WALKS[model] = kept
    return kept


def _adapter_layers(model: nn.Module) -> list[AdapterLayer]:
    return [layer for ref in _walk(model).layers if (layer := ref()) is not None]


def _refuse_checkpointing(model: nn.Module) -> None:
    """Factors made for the forward are gone when checkpointing recomputes a layer in backward, and torch's
    CheckpointError then names only tensor metadata; say it here, before any forward."""
    for name, ref in _walk(model).flagged:
        module = ref()
        if module is not None and getattr(module, "gradient_checkpointing", False) is True:
            where = f"module {name!r}" if name else "the model"
            raise LowdimError(
                f"stacked_factors cannot run under gradient checkpointing (on in {where}, a "
                f"{type(module).__name__}): backward would recompute its layers without the factors made for the "
                f"forward; run that forward without stacked_factors, or turn checkpointing off first "
                f"(activation_checkpointing_disable() in transformers 5, gradient_checkpointing_disable() in 4, "
                f"disable_gradient_checkpointing() in diffusers)")


def _group_key(slot: AdapterSlot, dtype: torch.dtype) -> tuple | None:
    """What slots must share to be stacked (None: this one does not train). Read from the modules' own
    dicts, since this runs for every slot at every call."""
    params: ParamDict = slot.params._parameters  # type: ignore[assignment]  # as in _frozen_tensors
    buffers: BufferDict = slot._buffers  # type: ignore[assignment]
    if not any(param.requires_grad for param in params.values()):
        return None
    return (dtype, id(slot.space), slot.frozen_merged_scale is not None,
            *((name, value.shape, value.dtype, value.device, value.requires_grad) for name, value in params.items()),
            *((name, value.shape, value.dtype, value.device) for name, value in buffers.items()))
