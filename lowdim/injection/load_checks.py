"""Checks that run before ``Adapters.load_tensors`` / ``load_buffers`` copy anything: a refusal leaves the adapter
as it was, rather than half overwritten."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from lowdim.errors import LowdimError
from lowdim.filecheck import printable_name
from lowdim.injection.layer import AdapterSlot


def check_loadable(name: str, kind: str, slots: Mapping[str, AdapterSlot],
                   given: Mapping[str, Mapping[str, Tensor]],
                   wanted: Mapping[str, Mapping[str, Tensor] | nn.ParameterDict]) -> None:
    """Every layer of the adapter given, no other, and each of its ``kind`` (params or buffers) with the shape
    ``wanted`` has, no other; otherwise one line naming the adapter and the first layer or tensor that is wrong."""
    missing, extra = sorted(set(slots) - set(given)), sorted(set(given) - set(slots))
    if missing or extra:
        # Only the side that is wrong: "missing layers []" read as one more problem.
        parts = ([f"missing layers {missing[:3]}"] if missing else []) + (
            [f"unexpected layers {extra[:3]}"] if extra else [])
        raise LowdimError(f"adapter '{name}': {kind} for {', '.join(parts)}")
    for layer, tensors in wanted.items():
        # Every lowdim caller gives a layer exactly its space's tensors (a file's are unflattened by those names, a
        # hypernetwork predicts by them): another name is a stranger's or another version's, never dropped unsaid.
        if stray := sorted(set(given[layer]) - set(tensors), key=str):
            raise LowdimError(f"adapter '{name}': {kind} for layer {layer}: unexpected tensor "
                              f"{printable_name(str(stray[0]))} (the layer's {kind}: {', '.join(tensors)})")
        for tensor_name, tensor in tensors.items():
            value = given[layer].get(tensor_name)
            if value is None or value.shape != tensor.shape:
                got = None if value is None else tuple(value.shape)
                raise LowdimError(f"adapter '{name}': {kind} {layer}.{tensor_name}: expected shape "
                                  f"{tuple(tensor.shape)}, got {got}")
