"""What a model's own ``state_dict()`` records about its adapters, and the check that refuses one that does not fit.

Frozen bases are regenerated from the adapter's seed and kept as non-persistent buffers, so a state dict holds
only the trainable params. Loaded into an adapter with another seed, or taken merged and loaded unmerged, it
matches key for key and the model silently computes something else. Each slot therefore saves two small int64
buffers (integers, so ``.half()`` and ``.to(dtype)`` never round them): a fingerprint of its frozen bases (only
where the space has any) and its merged state; loading compares them before any tensor is copied.
"""

from __future__ import annotations

import contextlib
import contextvars
import struct
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from lowdim import functional as F
from lowdim.errors import LowdimError
from lowdim.injection.slot_types import BufferDict
from lowdim.scoped import scoped

if TYPE_CHECKING:
    from lowdim.injection.layer import AdapterSlot

BASES = "lowdim_bases"  # the frozen bases' checksum (F.basis_checksum) as a signed 64-bit integer
MERGED = "lowdim_merged"  # float64 bits of (merged_scale, frozen_merged_scale), NaN for "not merged"
UNKNOWN = 0  # a fingerprint never computed (bases on the meta device): compared with nothing
_NOT_MERGED = struct.unpack("<q", struct.pack("<d", float("nan")))[0]
_recording = contextvars.ContextVar("lowdim_state_records", default=True)


@contextlib.contextmanager
def base_model_only() -> Iterator[None]:
    """For a reader of a model's state dict that drops the slots' entries (a fingerprint of the base model, taken
    at the start of every training run): the slots' records are left as they are, since bringing them up to
    date hashes every frozen basis, a cost the hot path of `personalize` should not pay for keys it ignores."""
    with scoped(_recording, False):
        yield


def recording() -> bool:
    return _recording.get()


def _bits(scale: float | None) -> int:
    return _NOT_MERGED if scale is None else struct.unpack("<q", struct.pack("<d", float(scale)))[0]


def _scale(bits: int) -> float | None:
    return None if bits == _NOT_MERGED else struct.unpack("<d", struct.pack("<q", bits))[0]


def merged_codes(slot: Any) -> tuple[int, int]:
    return _bits(slot.merged_scale), _bits(slot.frozen_merged_scale)


def bases_fingerprint(slot: Any) -> int:
    """The slot's bases' checksum, made at the first save or load and again only once a basis changes (moved,
    or written in place, e.g. by ``load_buffers``): never in a forward."""
    bases = [slot._buffers[name] for name in sorted(slot.buffer_names)]
    if any(basis.is_meta for basis in bases):  # no values to hash: a move keeps the ones hashed before
        return slot._fingerprint[1] if slot._fingerprint is not None else UNKNOWN
    key = tuple((id(basis), basis.data_ptr(), basis._version) for basis in bases)
    if slot._fingerprint is None or slot._fingerprint[0] != key:
        digest = F.basis_checksum(bases)
        slot._fingerprint = (key, int.from_bytes(bytes.fromhex(digest), "big", signed=True))
    return slot._fingerprint[1]


def refresh(slot: AdapterSlot) -> None:
    """Write the slot's current state into its buffers (a merge or a new basis changes it after injection)."""
    values: dict[str, Any] = {MERGED: list(merged_codes(slot))}
    if BASES in slot._buffers:
        values[BASES] = bases_fingerprint(slot)
    buffers = cast(BufferDict, slot._buffers)
    for name, value in values.items():
        old = buffers[name]
        if old.is_meta or slot._written.get(name) == value:
            continue
        # A new tensor, not an in-place write: the old one may have been made under torch.inference_mode.
        buffers[name] = torch.tensor(value, dtype=torch.int64, device=old.device)
        slot._written[name] = value


def _incoming(state_dict: dict[str, Any], key: str) -> list[int] | int | None:
    """The value saved under ``key``; None where there is none to trust: absent (a state dict from before this
    check, or hand-made), cast to a float, or on the meta device."""
    value = state_dict.get(key)
    if not isinstance(value, Tensor) or value.dtype != torch.int64 or value.is_meta:
        return None
    return value.tolist()


def _merged_words(codes: Sequence[int]) -> str:
    merged, frozen = _scale(codes[0]), _scale(codes[1])
    if merged is not None:
        return f"merged into the base weight at scale {merged:g}"
    if frozen is not None:
        return f"its frozen part merged into the base weight at scale {frozen:g}"
    return "unmerged"


def check_incoming(slot: Any, state_dict: dict[str, Any], prefix: str) -> None:
    """Refuse, in one line, a state dict whose fingerprint or merged state differs from this slot's."""
    adapter = prefix.rstrip(".").rpartition(".")[2]  # the slot's key in its layer's ``slots``
    where = f"state dict for layer {slot.layer.name}, adapter '{adapter}'"
    codes = _incoming(state_dict, prefix + MERGED)
    own_codes = merged_codes(slot)
    if isinstance(codes, list) and len(codes) == 2 and tuple(codes) != own_codes:
        raise LowdimError(
            f"{where}: it was saved with the adapter {_merged_words(tuple(codes))}, this model has it "
            f"{_merged_words(own_codes)}, so the base weight would carry the update twice or not at all: merge() "
            f"or unmerge() this model's adapter to match first, or move adapters with save_adapter/load_adapter")
    if BASES not in slot._buffers:
        return
    theirs, ours = _incoming(state_dict, prefix + BASES), bases_fingerprint(slot)
    if isinstance(theirs, int) and UNKNOWN not in (theirs, ours) and theirs != ours:
        raise LowdimError(
            f"{where}: its frozen bases differ from this model's (fingerprint {theirs & (2**64 - 1):016x}, "
            f"here {ours & (2**64 - 1):016x}): it was injected with another seed or space config and would "
            f"compute something else (or this model's bases were left uninitialised by to_empty() on a model not "
            f"on the meta device); inject with the same seed and config, or move adapters with "
            f"save_adapter/load_adapter")


def check_and_fill(slot: Any, state_dict: dict[str, Any], prefix: str) -> None:
    """``check_incoming``, then the slot's own values for keys the state dict lacks, so that one saved before
    this check (or hand-made) loads as it did, ``strict=True`` included."""
    check_incoming(slot, state_dict, prefix)
    refresh(slot)
    for name in (MERGED, BASES):
        if name in slot._buffers and _incoming(state_dict, prefix + name) is None:
            state_dict[prefix + name] = slot._buffers[name]


@torch.no_grad()
def refresh_merged_factors(slot: Any, incompatible_keys: Any) -> None:
    """After a merged slot loads a (merged) state dict, what ``unmerge`` subtracts is what the loaded params
    add, not what this model's earlier merge added: the loaded base weight carries the former."""
    if slot.frozen_merged_factors is not None:
        slot.frozen_merged_factors = _detached(slot.factors_for_merge("frozen"))
    if slot.merged_factors is not None:
        slot.merged_factors = _detached(slot.factors_for_merge("all"))


def _detached(factors: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor] | None:
    return None if factors is None else (factors[0].detach().clone(), factors[1].detach().clone())


# -- the whole model, before anything is copied ----------------------------------------------------------------
def _check_all(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    # Each slot checks itself too, but only once torch reaches it: by then earlier layers are loaded. This
    # pre-hook on the model the adapters were injected into refuses before any tensor is copied.
    for name, sub in module.named_modules(prefix=prefix[:-1]):
        if getattr(sub, "is_lowdim_slot", False):
            check_incoming(sub, state_dict, name + ".")


def _is_guard(hook: Any) -> bool:
    return getattr(hook, "hook", hook) is _check_all  # torch wraps a with_module hook


def guard_loads(model: nn.Module) -> None:
    """Check every slot of ``model`` before ``model.load_state_dict`` copies anything (once a model)."""
    if not any(_is_guard(hook) for hook in model._load_state_dict_pre_hooks.values()):
        model._register_load_state_dict_pre_hook(_check_all, with_module=True)


def unguard_loads(model: nn.Module) -> None:
    """Take the check off a model that has no adapter left: a plain model keeps no hook of lowdim's."""
    hooks = model._load_state_dict_pre_hooks
    for key in [key for key, hook in hooks.items() if _is_guard(hook)]:
        del hooks[key]
