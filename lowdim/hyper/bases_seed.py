"""The adapter seed a hypernetwork's predictions are injected with, and the checksum of the frozen bases it makes,
as ``save_hypernet`` records them in a file's extra (``storage._check_bases`` checks them at load)."""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowdim.errors import LowdimError

if TYPE_CHECKING:
    from lowdim.hyper.head import HyperHead
    from lowdim.spaces.base import LayerSpec, Space

# Layers whose bases the checksum covers: a generator that changed (another platform's QR, another
# version's seeding) changes every layer's, and all of SD1.5's take seconds to make at every load.
PROBED_LAYERS = 4


def bases_checksum(space: Space, layers: Sequence[LayerSpec], seed: int) -> str | None:
    """The checksum of the frozen bases ``space`` makes at ``seed`` for the first ``PROBED_LAYERS`` of
    ``layers`` (None: it has none).

    A hypernetwork predicts trainable params in these bases, so its file records this and loading
    checks it: bases made otherwise on another platform or version would turn each prediction into
    another ΔW without any error."""
    from lowdim import functional as F

    made = [tensor.float() for layer in layers[:PROBED_LAYERS]
            for _, tensor in sorted(space.make_buffers(layer, F.layer_seed(seed, layer.name)).items())]
    return F.basis_checksum(made) if made else None


def bases_record(path: str | os.PathLike, net: HyperHead, metadata: Mapping[str, Any],
                 adapter_seed: Any) -> dict[str, Any]:
    """What ``save_hypernet`` adds to ``metadata``: the adapter seed as an integer, and its bases' checksum
    unless the caller recorded its own (the bases its training saw)."""
    given = metadata.get("adapter_seed")
    if adapter_seed is not None and given is not None and _seed(given, path) != _seed(adapter_seed, path):
        raise LowdimError(f"{path}: adapter_seed={adapter_seed!r} and the metadata's adapter_seed {given!r} differ; "
                          f"give the seed the predicted adapters are injected with once")
    seed = adapter_seed if adapter_seed is not None else given
    if seed is None:
        if net.layers and net.space.make_buffers(net.layers[0], 0):
            warnings.warn(f"{path}: has no adapter_seed, so load_hypernet cannot check the frozen {net.space.name} "
                          f"bases its predictions live in; pass save_hypernet(..., adapter_seed=<the seed the "
                          f"adapters are injected with>)", UserWarning, stacklevel=3)
        return {}
    record: dict[str, Any] = {"adapter_seed": _seed(seed, path)}
    if "bases_checksum" not in metadata:
        checksum = bases_checksum(net.space, net.layers, record["adapter_seed"])
        if checksum is not None:  # a space without frozen bases has nothing to check
            record["bases_checksum"] = checksum
    return record


def _seed(value: Any, path: str | os.PathLike) -> int:
    try:
        return int(value) if isinstance(value, str) else operator.index(value)
    except (TypeError, ValueError):
        raise LowdimError(f"{path}: adapter_seed {value!r} is no integer; give the seed the predicted adapters are "
                          f"injected with") from None


def recorded_seed(extra: Mapping[str, Any], path: Path) -> int:
    """A file's recorded adapter seed, or one line naming a value that is no integer."""
    try:
        return int(extra["adapter_seed"])
    except (TypeError, ValueError):
        raise LowdimError(f"{path}: its adapter_seed {extra['adapter_seed']!r} is no integer; the file is "
                          f"damaged") from None
