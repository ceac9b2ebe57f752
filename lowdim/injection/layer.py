"""nn.Module wrappers that add adapters to a linear (or 1x1 conv, or embedding) layer.

The math lives in the spaces; these modules only own tensors and flags and route the forward. What one adapter
holds on one layer is an ``AdapterSlot`` (``lowdim/injection/slot.py``); its names are given here too, as before.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import Tensor, nn

from lowdim import functional as F
from lowdim.errors import LowdimError
from lowdim.injection.factor_cache import is_compiling
from lowdim.injection.select import user_stacklevel
from lowdim.injection.slot import SCALE, AdapterParams, AdapterSlot, MergedNotice
from lowdim.injection.slot_types import BaseLayer, SlotDict
from lowdim.spaces.base import LayerSpec

__all__ = ["SCALE", "AdapterLayer", "AdapterParams", "AdapterSlot"]


class _PerSampleWeight(Tensor):
    """What ``AdapterLayer.weight`` gives while a per-sample adapter is live: no single matrix is right.

    A tensor subclass makes ``torch.overrides.has_torch_function`` true, which every fused fast
    path checks, so they fall back to calling the module. Computing with it (``.T`` and ``.data``
    included) is an error, never a silent fallback to the base weight; metadata reads are fine.
    """

    _METADATA = frozenset({"shape", "dtype", "device", "layout", "ndim", "requires_grad", "is_leaf",
                           "is_nested", "is_cuda", "is_meta", "is_sparse", "is_quantized", "nbytes", "itemsize"})
    _METHODS = frozenset({"size", "dim", "numel", "__repr__", "__format__", "is_floating_point", "element_size",
                          "is_contiguous", "stride"})
    layer_name = "?"

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", None)
        getter = getattr(getattr(func, "__self__", None), "__name__", None) if name == "__get__" else None
        if name in cls._METHODS or getter in cls._METADATA:
            with torch._C.DisableTorchFunctionSubclass():
                return func(*args, **(kwargs or {}))
        layer = next((a.layer_name for a in args if isinstance(a, _PerSampleWeight)), cls.layer_name)
        raise LowdimError(
            f"layer {layer} carries per-sample adapters, which no single weight matrix represents: "
            f"it works only where the model calls the layer, not where it reads layer.weight"
        )


class AdapterLayer(nn.Module):
    """Wraps a base nn.Linear, 1x1 nn.Conv2d or nn.Embedding and adds the live adapters' updates.

    An embedding's weight E (vocab, width) is the (out, in) matrix of the update, so a lookup of
    token t adds row t of ΔE = up @ down, i.e. up[t] @ down: the same factors merge and export use.
    """

    is_lowdim_wrapper = True
    made = 0  # wrappers made so far in this process: code that keeps a model's wrappers knows when to look again
    base_layer: BaseLayer
    slots: SlotDict

    def __init__(self, base_layer: BaseLayer, name: str) -> None:
        super().__init__()
        AdapterLayer.made += 1
        self.base_layer = base_layer
        self.layer_name = name
        self.slots = SlotDict()
        # Read by every forward: a plain attribute, not two properties that each look the base layer up.
        self._takes_rows = not isinstance(base_layer, (nn.Conv2d, nn.Embedding))

    @property
    def spec(self) -> LayerSpec:
        weight = self.base_layer.weight
        return LayerSpec(self.layer_name, weight.shape[0], weight.shape[1])

    @property
    def is_conv(self) -> bool:
        return isinstance(self.base_layer, nn.Conv2d)

    @property
    def is_embedding(self) -> bool:
        return isinstance(self.base_layer, nn.Embedding)

    # Some torch modules read a linear's ``weight``/``bias`` instead of calling it, above all the fused
    # inference fast path of nn.TransformerEncoder(Layer) (eval mode, no grad needed). So the wrapper
    # exposes the effective weight W + Σ scale·ΔW of its live adapters, and a fused kernel computes
    # exactly what the merged model computes, at full speed. Making the fast path decline instead is
    # weaker: nn.MultiheadAttention reads out_proj.weight on its slow path too, forward hooks slow
    # every call and nn.TransformerEncoder's nested-tensor check ignores them, and
    # torch.backends.mha.set_fastpath_enabled is process-global. Forwards never read these
    # properties, so layers that are called (all of the SD path) pay nothing.
    @property
    def weight(self) -> Tensor:
        return self.effective_weight()

    @property
    def bias(self) -> Tensor | None:
        # An nn.Embedding has none: its AttributeError makes nn.Module's lookup answer "no attribute 'bias'"
        return self.base_layer.bias  # type: ignore[return-value]

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("weight", "bias"):  # nn.Module would answer a Parameter with a bare KeyError
            raise LowdimError(f"layer {self.layer_name} carries an adapter, so its .{name} is what the model computes "
                              f"with (W + scale·ΔW), not a slot: assign layer.base_layer.{name} instead")
        super().__setattr__(name, value)  # type: ignore[arg-type]  # torch's stub: Tensor | Module; any value works

    def effective_weight(self) -> Tensor:
        """Base weight plus every live, unmerged update (the base Parameter itself when none is live).

        Differentiable in the adapter tensors. With a per-sample adapter live, a stand-in that makes
        torch's fast paths call the module and refuses to be computed with.
        """
        weight = self.base_layer.weight
        for slot in self.slots.values():
            factors = slot.live_factors()
            if factors is None:
                continue
            if (slot.layer.out_features, slot.layer.in_features) != weight.shape[:2]:
                self._refuse_resized_base(weight.shape)
            down, up = factors
            if down.dim() > 2:
                stand_in = weight.detach().as_subclass(_PerSampleWeight)
                stand_in.layer_name = self.layer_name
                return stand_in
            delta = F.lowrank_delta(down.to(weight.dtype), up.to(weight.dtype)) * slot.scale
            weight = weight + delta.reshape(weight.shape)
        return weight

    def forward(self, x: Tensor) -> Tensor:
        if not self._takes_rows:
            return self._forward_any(x)
        # One row per token: the base's output is then a fresh (N, out) matrix the updates add into in place
        # (functional.lowrank_add_), and the layer's output a view of it in x's shape.
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        result = self.base_layer(rows)
        width = result.shape[-1]  # read once, for every slot's check and the view below
        compiling = is_compiling()
        for slot in self.slots.values():
            factors = slot.call_factors(x.dtype, compiling=compiling)
            if factors is None:
                if slot.merged_notice is not None:
                    _warn_if_training(slot.merged_notice, self, compiling)
                continue
            made_for = slot.layer  # the base's output and input widths are its weight's: two int compares
            if made_for.out_features != width or made_for.in_features != shape[-1]:
                self._refuse_resized_base(self.base_layer.weight.shape)
            scale = slot.scale
            if compiling:
                factors, scale = _scale_folded(slot, factors), 1.0
            if factors[0].dim() == 2:
                source = _dropped(rows, slot.dropout) if slot.dropout and self.training else rows
                result = F.lowrank_add_(result, source, *factors, scale=scale)
            else:  # per-sample factors need the batch dimension
                source = _dropped(x, slot.dropout) if slot.dropout and self.training else x
                update = self._low_rank_update(source, *factors).reshape(result.shape)
                result = result + (update if scale == 1.0 else scale * update)
        return result.view(*shape[:-1], width)

    def _forward_any(self, x: Tensor) -> Tensor:
        """A 1x1 convolution's or an embedding's forward: the update made apart, then added."""
        result = self.base_layer(x)
        compiling = is_compiling()
        for slot in self.slots.values():  # an embedding's update is made in the factors' dtype, then cast
            factors = slot.live_factors() if self.is_embedding else slot.call_factors(x.dtype, compiling=compiling)
            if factors is None:
                if slot.merged_notice is not None:
                    _warn_if_training(slot.merged_notice, self, compiling)
                continue
            shape = self.base_layer.weight.shape  # a table's rows show in no output: its weight is read
            if (slot.layer.out_features, slot.layer.in_features) != shape[:2]:
                self._refuse_resized_base(shape)
            scale = slot.scale
            if compiling:
                factors, scale = _scale_folded(slot, factors), 1.0
            # Token ids are no features to drop: an embedding's update always sees its whole input.
            dropping = slot.dropout and self.training and not self.is_embedding
            update = self._low_rank_update(_dropped(x, slot.dropout) if dropping else x, *factors)
            result = result + (update if scale == 1.0 else scale * update)
        return result

    def refuse_resized_base(self, adapter: str) -> None:
        """Raise where the base weight is no longer the shape ``adapter`` was made for: save_adapter's check, as a file
        written then would record the old shape, which a load refuses or applies to the wrong rows."""
        self._refuse_resized_base(self.base_layer.weight.shape, adapter)

    def _refuse_resized_base(self, shape: torch.Size, adapter: str | None = None) -> None:
        """Raise, naming the layer, the adapters (``adapter`` only, where given) and both shapes, where the base weight
        (now ``shape``) is no longer the shape they were made for: a tied lm_head whose embedding
        ``resize_token_embeddings`` grew has its rows changed under the adapter, and torch's reshape or in-place error
        named neither."""
        stale = {name: f"{slot.layer.out_features}x{slot.layer.in_features}" for name, slot in self.slots.items()
                 if (slot.layer.out_features, slot.layer.in_features) != tuple(shape[:2])
                 and adapter in (None, name)}
        if not stale:
            return
        first = next(iter(stale))
        made = (f"adapter '{first}' was made for {stale[first]}" if len(stale) == 1 else
                "adapters " + ", ".join(f"'{name}' ({made_for})" for name, made_for in stale.items())
                + " were made for another shape")
        removal = " and ".join(f"lowdim.Adapters(model).delete('{name}')" for name in stale)
        raise LowdimError(f"layer {self.layer_name}: its base weight is now {shape[0]}x{shape[1]}, but {made} (a "
                          f"tied embedding resized, as resize_token_embeddings does?): resize the model before "
                          f"inject, or remove the adapter first ({removal}) and inject again after")

    def _low_rank_update(self, x: Tensor, down: Tensor, up: Tensor) -> Tensor:  # not _apply: nn.Module owns it
        # A conv's input is (N, C, H, W) or one image (C, H, W): only the first has a batch dimension.
        unbatched = x.dim() < (4 if self.is_conv else 2)
        if down.dim() > 2 and (unbatched or x.shape[0] % down.shape[0]):
            raise LowdimError(f"layer {self.layer_name}: per-sample adapters for {down.shape[0]} samples, but "
                              f"the input {tuple(x.shape)} has no batch dimension that is a multiple of it "
                              f"(batch first)")
        if self.is_embedding:
            return _embedding_update(x, down, up).to(self.base_layer.weight.dtype)
        if not self.is_conv:
            return F.lowrank_apply(x, down, up)
        channels_last = x.movedim(-3, -1)  # channels are dimension -3 with or without a batch dimension
        return F.lowrank_apply(channels_last, down, up).movedim(-1, -3)

    @torch.no_grad()
    def add_to_weight(self, down: Tensor, up: Tensor, scale: float) -> None:
        weight = self.base_layer.weight
        if (down.shape[-1], up.shape[-2]) != (weight.shape[1], weight.shape[0]):  # merge's and unmerge's check
            self._refuse_resized_base(weight.shape)
        # At least fp32 for the product, so an fp16 base gains a correctly rounded delta.
        dtype = torch.promote_types(weight.dtype, torch.float32)
        delta = F.lowrank_delta(down.to(dtype), up.to(dtype))
        if abs(scale) != 1.0:  # ±1 is exact as an add or a subtract: no pass over the full-size delta
            delta = delta * scale
        delta = delta.reshape(weight.shape).to(weight.dtype)
        if scale == -1.0:
            weight.sub_(delta)
        else:
            weight.add_(delta)


def _warn_if_training(notice: MergedNotice, layer: AdapterLayer, compiling: bool) -> None:
    """Once per merged adapter, where a forward could be a training step with nothing to train on ``layer``: torch's
    own error at backward() ("does not require grad") names neither lowdim nor the merge. Evaluating (no grad, or
    eval mode) is what merge is for, and so is training another adapter over a merged one (HyperDreamBooth §4.3)."""
    if compiling or notice.given or not layer.training or not torch.is_grad_enabled() or _trains_a_slot(layer):
        return
    notice.given = True  # said once, or never: an adapter trained elsewhere over it is a choice, not a slip
    if _another_layer_trains(notice.model()):
        return
    warnings.warn(f"adapter '{notice.adapter}' is merged into the model's weights: its params get no gradient; "
                  f"unmerge it before training", stacklevel=user_stacklevel(_TORCH))


def _trains_a_slot(layer: AdapterLayer) -> bool:
    """Whether a slot of ``layer`` that the forward adds (neither merged nor disabled) has a tensor that requires
    grad: its own param, or an override computed from trained tensors."""
    return any(slot.enabled and slot.merged_scale is None
               and any(tensor.requires_grad for tensor in slot.tensors().values())
               for slot in layer.slots.values())


def _another_layer_trains(model: nn.Module | None) -> bool:
    """Whether an adapter of ``model`` trains on some layer: a style merged everywhere and a new adapter trained on
    a few layers (HyperDreamBooth §4.3 by hand) leaves layers that hold only the style, whichever runs first."""
    return model is not None and any(isinstance(module, AdapterLayer) and _trains_a_slot(module)
                                     for module in model.modules())


# A forward's warning points past torch's module call machinery (nn.Module, nn.Sequential) too: at the user's line
# that called the model, or their own forward that called the layer.
_TORCH = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


def _dropped(x: Tensor, p: float) -> Tensor:
    """``x`` with a share ``p`` of its entries zeroed and the rest scaled by 1/(1-p): the adapter's input only,
    so the base layer keeps computing on what it was given (peft's ``lora_dropout``)."""
    return nn.functional.dropout(x, p, training=True)


def _scale_folded(slot: AdapterSlot, factors: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The factors with the slot's scale buffer multiplied into ``up``: what a compiled forward adds at scale 1."""
    down, up = factors
    return down, up * getattr(slot, SCALE)


def _embedding_update(ids: Tensor, down: Tensor, up: Tensor) -> Tensor:
    """Rows ``ids`` of ΔE = up @ down, as up[ids] @ down, never forming ΔE (vocab x width).

    Batched factors (B, vocab, r) / (B, r, width): sample j of ``ids`` (N, ...) uses adapter j % B.
    """
    dtype = torch.promote_types(up.dtype, down.dtype)  # a frozen fp32 factor must not round an fp64 one
    down, up = down.to(dtype), up.to(dtype)
    if up.dim() == 2:
        return nn.functional.embedding(ids, up) @ down
    batch = up.shape[0]
    tiles = ids.shape[0] // batch
    grouped = ids.reshape(tiles, batch, -1)  # sample j = tile * B + b
    picked = up[torch.arange(batch, device=ids.device)[None, :, None], grouped]  # (tiles, B, L, r)
    rows = torch.einsum("tblr,brw->tblw", picked, down)
    return rows.reshape(*ids.shape, down.shape[-1])
