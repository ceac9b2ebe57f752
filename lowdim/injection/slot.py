"""One adapter's tensors on one layer (``AdapterSlot``): its params, frozen bases, scale and state flags.

Kept apart from the wrapper that routes the forward (``lowdim/injection/layer.py``, which still gives these names):
what a slot stores, how its scale is mirrored into a buffer a compiled forward reads, and what a move or a cast
(``_apply``) does to its frozen bases.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError
from lowdim.injection import factor_cache, state_guard
from lowdim.injection.slot_types import BufferDict, ParamDict
from lowdim.spaces.base import LayerSpec, Space, Tensors

if TYPE_CHECKING:
    from lowdim.injection.stacked import FrozenStack

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


class MergedNotice:
    """Set by ``merge`` on every slot of the adapter it folds in, one object for all of them: the first forward
    that could be training (grad on, layer in training mode, no other live slot of the model trains) warns that the
    merged params get no gradient, once for the adapter, not once a layer. Read only where the forward skips a
    slot, so unmerged forwards pay nothing."""

    def __init__(self, adapter: str, model: nn.Module | None = None) -> None:
        self.adapter = adapter
        self.given = False
        # Weak: a slot must not keep its model alive. A pickle goes without it (the layer alone is judged then).
        self._model = weakref.ref(model) if model is not None else None

    def model(self) -> nn.Module | None:
        """The model the adapter was merged into, while it lives."""
        return self._model() if self._model is not None else None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    def __deepcopy__(self, memo: dict) -> MergedNotice:
        """A copy of the model (copy.deepcopy, begun at the model or above it) judges by its own copy of the model,
        not the first one, which may train what the copy does not."""
        copied = MergedNotice(self.adapter)
        copied.given = self.given
        model = self.model()
        copied._model = weakref.ref(memo[id(model)]) if model is not None and id(model) in memo else None
        return copied


class AdapterSlot(nn.Module):
    """One adapter's tensors on one layer, plus its scale and state flags."""

    is_lowdim_slot = True
    merged_notice: MergedNotice | None = None  # a class default: a slot pickled before the notice has none

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
        self._frozen_stack: FrozenStack | None = None  # stacked_factors' stack of this slot's group's frozen tensors
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

    # -- what the model's own state_dict() records, and what its load checks (lowdim/injection/state_guard.py) --
    def _guard_state_dicts(self, has_bases: bool) -> None:
        self._fingerprint: tuple[tuple, int] | None = None  # made at the first save or load, never at injection
        self._written: dict[str, object] = {state_guard.MERGED: list(state_guard.merged_codes(self))}
        self.register_buffer(state_guard.MERGED, torch.tensor(self._written[state_guard.MERGED], dtype=torch.int64))
        if has_bases:  # only frozen bases can differ between two adapters that match key for key
            self._written[state_guard.BASES] = state_guard.UNKNOWN
            self.register_buffer(state_guard.BASES, torch.tensor(state_guard.UNKNOWN, dtype=torch.int64))
        self.register_load_state_dict_post_hook(_after_load)  # first: the merged factors need real bases
        self.register_load_state_dict_post_hook(state_guard.refresh_merged_factors)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        if state_guard.recording():
            state_guard.refresh(self)
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        state_guard.check_and_fill(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)
        self._loaded_from = (state_dict, prefix)  # for _leave_meta_after_assign, once the params are loaded too

    def _leave_meta_after_assign(self, state_dict, prefix: str) -> None:
        """``load_state_dict(sd, assign=True)`` into a model built on the meta device puts the loaded params on a
        real device and never calls ``_apply``: the bases (no state dict entry), the scale's buffer and any record
        the state dict lacked stay on meta, and the forward ran on whatever memory was there. They are made
        here on the params' device, as ``_apply`` makes them after ``to_empty()``, and the bases are checked
        against the state dict's fingerprint, which could not be compared while they were on meta."""
        params = list(self.params.values())
        if not any(buffer.is_meta for buffer in cast(BufferDict, self._buffers).values()):
            return  # the usual load: nothing left behind
        if not params or any(param.is_meta for param in params):
            return  # nothing was assigned, or not all of it: a forward refuses (factor_cache.refuse_half_meta)
        device = params[0].device
        buffers = cast(BufferDict, self._buffers)
        scale = buffers.get(SCALE)
        if scale is not None and scale.is_meta:
            buffers[SCALE] = torch.tensor(float(self.scale), dtype=torch.float32, device=device)
        for name in list(self._written):
            if buffers[name].is_meta:  # a record the state dict lacked: refresh() below writes its value
                buffers[name] = torch.zeros_like(buffers[name], device=device)
                del self._written[name]
        seed = getattr(self, "basis_seed", None)  # None: a slot pickled before slots knew it, left to refuse
        if seed is not None and any(buffers[name].is_meta for name in self.buffer_names):
            for name in self.buffer_names:
                buffers[name] = torch.zeros_like(buffers[name], device=device)
            self._remake_bases()
            state_guard.check_incoming(self, state_dict, prefix)
        state_guard.refresh(self)

    def tensors(self) -> Tensors:
        # The ParameterDict's own dict: its items() looks each key up through nn.Module.__getattr__, host
        # time that every adapted layer's forward paid (1.4 ms a step on SD1.5's 176 layers).
        if self.override is not None:
            return self.override
        parameters: ParamDict = self.params._parameters  # type: ignore[assignment]  # no None: not a cast() call
        return dict(parameters)

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
        make = self.space.trainable_factors if self.frozen_merged_scale is not None else self.space.factors
        try:
            factors = make(params, buffers)
        except RuntimeError:  # a space that mixes meta and real tensors (vera's) gets torch's device error
            factor_cache.refuse_half_meta(self)
            raise
        return factor_cache.refuse_meta(self, factors)

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


def _after_load(slot: AdapterSlot, incompatible_keys: object) -> None:
    # A post-hook, not _load_from_state_dict: torch loads the slot's params (its child module) after the slot.
    loaded = slot.__dict__.pop("_loaded_from", None)
    if loaded is not None:
        slot._leave_meta_after_assign(*loaded)
