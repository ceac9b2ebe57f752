"""Each first-party space's ΔW written from its paper, never through ``factors``, for the contract suite.

A space without an entry here is checked against the product of its own ``factors`` on one sample's tensors
at a time (what everything lowdim runs computes; its ``delta`` is checked against that product once, by the
suite's ``test_delta_is_the_product_of_the_factors``, so a bad ``delta`` override fails there alone): that still
catches a forward, a merge, a file or a per-sample batch that disagrees with the space's single-sample math,
but not single-sample math that is wrong. A plugin adds its paper's formula with
``REFERENCE_DELTA["my-space"] = formula`` before the suite runs, which makes every check an independent one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from lowdim import functional as F
from lowdim.spaces.base import Space
from lowdim.spaces.lora import LoraConfig
from lowdim.spaces.stack import StackSpace

Tensors = dict[str, Tensor]
Formula = Callable[[Space, Tensors, Tensors], Tensor]


# A formula is looked up by its space's name, so it is given that space; Formula cannot say which (cast).
def _lora(space: Space, p: Tensors, b: Tensors) -> Tensor:
    config = cast(LoraConfig, space.config)
    alpha = config.alpha if config.alpha is not None else config.rank
    return alpha / config.rank * p["up"] @ p["down"]  # Hu et al. 2021: (α/r)·B·A


def _lidb(space: Space, p: Tensors, b: Tensors) -> Tensor:
    return b["A_aux"] @ p["A_train"] @ p["B_train"] @ b["B_aux"]  # HyperDreamBooth eq. 1


def _vera(space: Space, p: Tensors, b: Tensors) -> Tensor:
    return torch.diag(p["b"]) @ b["B"] @ torch.diag(p["d"]) @ b["A"]  # Kopiczko et al. 2023


def _ti(space: Space, p: Tensors, b: Tensors) -> Tensor:
    vectors = p["vectors"]  # Gal et al. 2022: n new token vectors, the last n rows; every other row unchanged
    rows = b["rows"].shape[0]
    zeros = torch.zeros(rows - len(vectors), vectors.shape[1], dtype=vectors.dtype)
    return torch.cat([zeros, vectors])


def _stack(space: Space, p: Tensors, b: Tensors) -> Tensor:
    parts = [reference_delta(component, StackSpace.component_tensors(p, i), StackSpace.component_tensors(b, i))
             for i, component in enumerate(cast(StackSpace, space).components)]
    return sum(parts[1:], parts[0])  # HyperDreamBooth §4.3: the components' updates add


REFERENCE_DELTA: dict[str, Formula] = {"lora": _lora, "lidb": _lidb, "vera": _vera, "stack": _stack, "ti": _ti}


def reference_delta(space: Space, params: Tensors, buffers: Tensors) -> Tensor:
    """ΔW of one layer for one sample's unbatched ``params``, buffers cast to the params' dtype."""
    dtype = next(iter(params.values())).dtype
    buffers = {k: v.to(dtype) for k, v in buffers.items()}
    if space.name in REFERENCE_DELTA:
        return REFERENCE_DELTA[space.name](space, params, buffers)
    return F.lowrank_delta(*space.factors(params, buffers))
