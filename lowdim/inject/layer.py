"""nn.Module wrappers that add adapters to a linear (or 1x1 conv, or embedding) layer.

The math lives in the spaces; these modules only own tensors and flags and route the forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from lowdim import functional as F
from lowdim.errors import LowdimError
from lowdim.inject import factor_cache, state_guard
from lowdim.inject.factor_cache import is_compiling
from lowdim.inject.slot_types import BaseLayer, BufferDict, ParamDict, SlotDict
from lowdim.spaces.base import LayerSpec, Space, Tensors

if TYPE_CHECKING:
    from lowdim.inject.stacked import _FrozenStack

# The scale as a 0-dim fp32 buffer, which only a compiled forward reads: dynamo guards a float attribute's
# value, so each new scale compiled the model again (the 9th fell back to eager, or failed with fullgraph=True),
# while a tensor's value is an input of the graph. Eager forwards read the float: no tensor op per layer.
SCALE = "lowdim_scale"


class AdapterParams(nn.ParameterDict):
    """One adapter's params on one layer, which stay the Parameters they are.

    The forward, ``stacked_factors``, ``Adapters.parameters`` and the files read them as stored Parameters;
    ``torch.nn.utils.parametrize`` would replace one by a value computed on access, which they would miss
    (the forward failed with a bare KeyError). It removes the Parameter first, so that is refused.
    """

    layer_name = "?"

    def __delattr__(self, name: str) -> None:
        self._refuse_removing(name)
        super().__delattr__(name)

    def __delitem__(self, key: str) -> None:
        self._refuse_removing(key)  # before ParameterDict forgets the key
        super().__delitem__(key)

    def _refuse_removing(self, name: str) -> None:
        if name in self._parameters:
            raise LowdimError(
                f"layer {self.layer_name}: adapter param '{name}' cannot be parametrized (torch.nn.utils.parametrize) "
                f"or removed: lowdim computes, trains and saves it as a plain Parameter; put a constraint into "
                f"a Space's factors() instead, or train through Adapters.override with tensors you compute")


class AdapterSlot(nn.Module):
    """One adapter's tensors on one layer, plus its scale and state flags."""

    is_lowdim_slot = True

    def __init__(self, space: Space, layer: LayerSpec, params: Tensors, buffers: Tensors,
                 basis_seed: int | None = None) -> None:
        super().__init__()
        self.space = space
        self.layer = layer
        self.basis_seed = basis_seed  # what ``buffers`` were made from: to_empty() leaves them to be made again
        trainable = set(space.trainable_names(layer))
        self.params = AdapterParams(
            {name: nn.Parameter(value, requires_grad=name in trainable) for name, value in params.items()}
        )
        self.params.layer_name = layer.name
        self.buffer_names = list(buffers)
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)
        self.scale = 1.0  # mirrored into the buffer SCALE (__setattr__)
        self.dropout = 0.0  # share of the update's input zeroed while training (peft's lora_dropout)
        self.enabled = True
        self.merged_scale: float | None = None  # set while the whole update is folded into the base
        self.frozen_merged_scale: float | None = None  # set while only a stack's frozen part is
        self.merged_factors: tuple[Tensor, Tensor] | None = None  # what merge added, for unmerge
        self.frozen_merged_factors: tuple[Tensor, Tensor] | None = None
        self.override: Tensors | None = None
        self._kept_factors: tuple[tuple, tuple[Tensor, Tensor] | None] | None = None
        self.step_factors: tuple[Tensor, Tensor] | None = None  # given for one forward by stacked_factors
        self._frozen_stack: _FrozenStack | None = None  # stacked_factors' stack of this slot's group's frozen tensors
        self._guard_state_dicts(bool(buffers))

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)  # type: ignore[arg-type]  # torch's stub: Tensor | Module; any value works
        if name == "scale":  # set_scale, load_adapter, relax_rank and lowdim_sd's parts all write it here
            self._mirror_scale()

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if SCALE not in self._buffers:  # a slot pickled before slots mirrored their scale
            self._mirror_scale()

    def _mirror_scale(self) -> None:
        held = self._buffers.get(SCALE)
        if held is None or (held.is_inference() and not torch.is_inference_mode_enabled()):
            device = held.device if held is not None else None
            self.register_buffer(SCALE, torch.tensor(float(self.scale), dtype=torch.float32, device=device),
                                 persistent=False)
        else:  # in place: a compiled graph (a CUDA graph too) keeps reading the same memory
            with torch.no_grad():
                held.fill_(float(self.scale))

    # -- what the model's own state_dict() records, and what its load checks (lowdim/inject/state_guard.py) --
    def _guard_state_dicts(self, has_bases: bool) -> None:
        self._fingerprint: tuple[tuple, int] | None = None  # made at the first save or load, never at injection
        self._written: dict[str, object] = {state_guard.MERGED: list(state_guard.merged_codes(self))}
        self.register_buffer(state_guard.MERGED, torch.tensor(self._written[state_guard.MERGED], dtype=torch.int64))
        if has_bases:  # only frozen bases can differ between two adapters that match key for key
            self._written[state_guard.BASES] = state_guard.UNKNOWN
            self.register_buffer(state_guard.BASES, torch.tensor(state_guard.UNKNOWN, dtype=torch.int64))
        self.register_load_state_dict_post_hook(state_guard.refresh_merged_factors)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        if state_guard.recording():
            state_guard.refresh(self)
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        state_guard.check_and_fill(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def tensors(self) -> Tensors:
        # The ParameterDict's own dict: its items() looks each key up through nn.Module.__getattr__, host
        # time that every adapted layer's forward paid (1.4 ms a step on SD1.5's 176 layers).
        return self.override if self.override is not None else dict(cast(ParamDict, self.params._parameters))

    def _apply(self, fn, recurse: bool = True):
        """Moves reach the frozen bases, casts do not: ``model.half()`` must not round LiDB's bases (the
        file's checksum and every reload regenerate them in fp32); the factors cast them at use.

        Off the meta device (``to_empty()``) tensors come back as uninitialised memory. The bases are no
        state dict entry, so no load would restore them: they are made again from the seed here. The state
        records are, but a state dict may lack them, so they are written again at the next save or load."""
        buffers = cast(BufferDict, self._buffers)
        frozen = {name: buffers.pop(name) for name in self.buffer_names}
        scale = buffers.pop(SCALE, None)  # made again from the float: fp32 whatever the cast, and set
        records_on_meta = [name for name in self._written if buffers[name].is_meta]
        super()._apply(fn, recurse)
        buffers = cast(BufferDict, self._buffers)
        if scale is not None:
            buffers[SCALE] = torch.tensor(float(self.scale), dtype=torch.float32, device=fn(scale).device)
        for name, buffer in frozen.items():
            moved = fn(buffer)
            buffers[name] = moved if moved.dtype == buffer.dtype else buffer.to(moved.device)
        if any(buffer.is_meta and not buffers[name].is_meta for name, buffer in frozen.items()):
            self._remake_bases()
        for name in records_on_meta:
            if not buffers[name].is_meta:
                del self._written[name]
        return self

    def _remake_bases(self) -> None:
        seed = getattr(self, "basis_seed", None)
        if seed is None:  # a slot pickled before slots knew their seed: the load's check refuses its bases
            return
        with torch.device("cpu"):  # not a caller's meta-device context
            made = self.space.make_buffers(self.layer, seed)
        buffers = cast(BufferDict, self._buffers)
        for name in self.buffer_names:
            old = buffers[name]
            buffers[name] = made[name].to(device=old.device, dtype=old.dtype)

    def buffers_dict(self) -> Tensors:
        buffers = cast(BufferDict, self._buffers)
        return {name: buffers[name] for name in self.buffer_names}

    @property
    def batch_size(self) -> int | None:
        """Number of per-sample adapters, or None for one shared adapter."""
        shapes = self.space.param_shapes(self.layer)
        for name, value in self.tensors().items():
            extra = value.dim() - len(shapes[name])
            return value.shape[0] if extra == 1 else None
        return None

    def live_factors(self) -> tuple[Tensor, Tensor] | None:
        """The factors the forward must still add (None when everything is merged or disabled)."""
        if not self.enabled or self.merged_scale is not None:
            return None
        params, buffers = self.tensors(), self.buffers_dict()
        if self.frozen_merged_scale is not None:
            return self.space.trainable_factors(params, buffers)
        return self.space.factors(params, buffers)

    call_factors = factor_cache.call_factors  # kept between no_grad calls; a method, as the forward calls it

    def factors_for_merge(self, part: str) -> tuple[Tensor, Tensor] | None:
        params, buffers = self.tensors(), self.buffers_dict()
        if self.batch_size is not None:
            raise LowdimError(
                f"cannot merge per-sample adapters into layer {self.layer.name}: pick one sample first"
            )
        frozen, trainable = self.space.split_factors(params, buffers)
        if part == "frozen":
            return frozen
        if self.frozen_merged_scale is not None:
            return trainable
        return self.space.factors(params, buffers)


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
        base = self.base_layer
        if isinstance(base, nn.Embedding):  # as its own lookup would: no such attribute
            raise AttributeError(f"layer {self.layer_name} wraps an nn.Embedding, which has no bias")
        return base.bias

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
        rows = x.reshape(-1, x.shape[-1])
        result = self.base_layer(rows)
        compiling = is_compiling()
        for slot in self.slots.values():
            factors = slot.call_factors(x.dtype)
            if factors is None:
                continue
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
        return result.view(*x.shape[:-1], result.shape[-1])

    def _forward_any(self, x: Tensor) -> Tensor:
        """A 1x1 convolution's or an embedding's forward: the update made apart, then added."""
        result = self.base_layer(x)
        compiling = is_compiling()
        for slot in self.slots.values():  # an embedding's update is made in the factors' dtype, then cast
            factors = slot.live_factors() if self.is_embedding else slot.call_factors(x.dtype)
            if factors is None:
                continue
            scale = slot.scale
            if compiling:
                factors, scale = _scale_folded(slot, factors), 1.0
            # Token ids are no features to drop: an embedding's update always sees its whole input.
            dropping = slot.dropout and self.training and not self.is_embedding
            update = self._low_rank_update(_dropped(x, slot.dropout) if dropping else x, *factors)
            result = result + (update if scale == 1.0 else scale * update)
        return result

    def _low_rank_update(self, x: Tensor, down: Tensor, up: Tensor) -> Tensor:  # not _apply: nn.Module owns it
        if down.dim() > 2 and (x.dim() < 2 or x.shape[0] % down.shape[0]):
            raise LowdimError(f"layer {self.layer_name}: per-sample adapters for {down.shape[0]} samples, but "
                              f"the input {tuple(x.shape)} has no batch dimension that is a multiple of it "
                              f"(batch first)")
        if self.is_embedding:
            return _embedding_update(x, down, up).to(self.base_layer.weight.dtype)
        if not self.is_conv:
            return F.lowrank_apply(x, down, up)
        channels_last = x.movedim(1, -1)
        return F.lowrank_apply(channels_last, down, up).movedim(-1, 1)

    @torch.no_grad()
    def add_to_weight(self, down: Tensor, up: Tensor, scale: float) -> None:
        weight = self.base_layer.weight
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
