"""The factors a no_grad forward keeps between calls (``AdapterSlot.call_factors``), and when it must not keep them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook

from lowdim.errors import LowdimError

if TYPE_CHECKING:
    from lowdim.injection.slot import AdapterSlot

_optimizer_steps = 0


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


# A fused optimizer (fused=True, and lowdim_sd's training engine) writes its parameters without bumping
# their version counters, so the factors a call keeps would outlive a training step. Every torch.optim
# step, in this process and any optimizer, therefore counts as a change of every adapter.
register_optimizer_step_post_hook(_count_optimizer_step)


# torch.compiler.is_compiling arrived in torch 2.3; pyproject allows 2.1, where nothing compiles this code anyway.
is_compiling = getattr(torch.compiler, "is_compiling", None) or (lambda: False)
# What torch.jit.is_tracing asks, without its TorchScript check: every no_grad forward of every layer asks it.
_is_tracing = torch._C._is_tracing
# torch.amp.is_autocast_available arrived in torch 2.4; before it, meta is the one device torch.autocast refuses.
_autocast_available = getattr(torch.amp, "is_autocast_available", None) or (lambda device_type: device_type != "meta")


def call_factors(slot: AdapterSlot, dtype: torch.dtype, compiling: bool | None = None) -> tuple[Tensor, Tensor] | None:
    """``live_factors`` in ``dtype``, as a forward uses them.

    Without gradients (generation) they are kept until a tensor they are made of changes (in place or
    moved) or any torch.optim optimizer steps (a fused one leaves the version counters as they were; a
    write through ``.data``, or a step replayed from a CUDA graph, is not seen), so an adapter that is
    not training launches no cast and no factor product per call: a GPU waiting on its host launches
    per layer only what peft does. They are made with autocast off, so a call under autocast leaves
    the same factors as any other call. With gradients they are made each call, as autograd needs, unless
    ``lowdim.stacked_factors`` made them with the other layers of this slot's shape. Nor are they kept
    under ``torch.compile`` (a graph cannot compare data pointers, and makes the factors once anyway),
    while ``torch.jit.trace`` records (kept factors would be traced as constants that no param change
    reaches), or for params without storage (``torch.func.vmap`` over ``functional_call``).

    ``compiling`` is ``is_compiling()`` when the caller asked already (the forward asks once per layer, for
    all its slots); None asks here.
    """
    if slot.step_factors is not None and slot.enabled and slot.merged_scale is None:
        return cast_factors(slot.step_factors, dtype)
    if (torch.is_grad_enabled() or slot.override is not None
            or (is_compiling() if compiling is None else compiling) or _is_tracing()):
        return cast_factors(slot.live_factors(), dtype)
    sources = (*slot.params.values(), *slot.buffers_dict().values())
    try:
        key = (dtype, slot.enabled, slot.merged_scale, slot.frozen_merged_scale, _optimizer_steps,
               *((tensor.data_ptr(), tensor._version) for tensor in sources))
    except RuntimeError:  # a try costs nothing on the hot path; a check of every tensor would not
        if all(map(torch._C._has_storage, sources)):
            raise
        return cast_factors(slot.live_factors(), dtype)  # a functorch-wrapped param: nothing to key on
    if slot._kept_factors is None or slot._kept_factors[0] != key:
        device_type = sources[0].device.type if sources else "cpu"
        made = _made_without_autocast(slot, device_type)
        slot._kept_factors = (key, cast_factors(made, dtype))
    return slot._kept_factors[1]


def _made_without_autocast(slot: AdapterSlot, device_type: str) -> tuple[Tensor, Tensor] | None:
    """The live factors as an fp32 call makes them. Autocast is turned off here, where the factors are made
    once, and is not keyed on: a key would ask for the autocast state on every call of every layer.
    Kept factors made under autocast (LiDB's ``A_aux @ A_train`` rounded to bf16) served every later
    fp32 call until a param changed."""
    if not _autocast_available(device_type):  # the meta device: nothing autocasts there
        return slot.live_factors()
    with torch.autocast(device_type, enabled=False):
        return slot.live_factors()


OFFLOADED = ("an adapter's tensors are on the meta device because accelerate's offload hooks hold them (sequential "
             "CPU offload, or a device_map that offloads), and only a module's own forward brings them back, which "
             "lowdim's adapters never call: remove the hooks (accelerate.hooks.remove_hook_from_submodules(model); "
             "diffusers: pipe.remove_all_hooks()), or offload whole models (diffusers: "
             "pipe.enable_model_cpu_offload())")


def refuse_meta(slot: AdapterSlot, factors: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor] | None:
    """Factors made from tensors on the meta device next to real inputs would run as whatever memory is there
    (an output that changes on every call, no error): refused where the slot's tensors are the empty ones
    accelerate's sequential offload leaves, or only partly on meta. A model wholly on meta (shape tracing) runs
    as it is. Only meta factors are looked into: two attribute reads on every forward of every layer."""
    if factors is not None and (factors[0].is_meta or factors[1].is_meta):
        if hasattr(slot, "_hf_hook") or hasattr(slot.params, "_hf_hook"):
            raise LowdimError(OFFLOADED)
        refuse_half_meta(slot)
    return factors


def refuse_half_meta(slot: AdapterSlot) -> None:
    """Refuse, in one line naming the layer, a slot with some of its tensors on the meta device and some not:
    what a model built on meta gets when its params are set one by one (accelerate's
    ``set_module_tensor_to_device``) and not through a load, which would have made the bases again."""
    tensors = {**slot.tensors(), **slot.buffers_dict()}
    on_meta = [name for name, tensor in tensors.items() if tensor.is_meta]
    if not on_meta or len(on_meta) == len(tensors):
        return
    device = next(tensor.device for tensor in tensors.values() if not tensor.is_meta)
    if any(name in slot.buffer_names for name in on_meta):
        what, fix = "frozen bases", ("they are made from the adapter's seed, never loaded: call "
                                     "model.to_empty(device=...) before loading the state dict, or load it with "
                                     "model.load_state_dict(sd, assign=True); either makes them again")
    else:
        what, fix = "params", ("load a state dict that holds them (load_state_dict(sd, strict=True) names any it "
                               "lacks), or call model.to_empty(device=...) before loading")
    raise LowdimError(f"layer {slot.layer.name}: the adapter's {what} {', '.join(on_meta)} are on the meta device "
                      f"while the rest is on {device}, so the forward would compute with whatever memory is there: "
                      f"{fix}")


def cast_factors(factors: tuple[Tensor, Tensor] | None, dtype: torch.dtype) -> tuple[Tensor, Tensor] | None:
    if factors is None or (factors[0].dtype == dtype and factors[1].dtype == dtype):
        return factors  # a no-op .to() still costs its call on the host, twice per layer and forward
    return factors[0].to(dtype), factors[1].to(dtype)
