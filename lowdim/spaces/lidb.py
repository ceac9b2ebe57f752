"""Lightweight DreamBooth (HyperDreamBooth §4.1, eq. 1).

    ΔW = A_aux · A_train · B_train · B_aux        (torch orientation: ΔW is (out, in))

A_aux (out, a) has orthonormal columns and B_aux (b, in) orthonormal rows, both scaled to a
constant magnitude and frozen; only A_train (a, r) and B_train (r, b) train. The bases are
regenerated from a per-layer seed, so a file stores a·r + r·b numbers per layer plus one seed.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import torch
from torch import Tensor

from lowdim import functional as F
from lowdim.errors import ConfigError
from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, Tensors, option, require

INITS = ("zero", "gaussian")


@dataclass
class LidbConfig(SpaceConfig):
    a: int = option(100, "Width of the frozen output basis A_aux (clamped to the layer's out dimension).")
    b: int = option(50, "Width of the frozen input basis B_aux (clamped to the layer's in dimension).")
    rank: int = option(1, "Rank r of the inner LoRA; the paper uses 1.")
    aux_scale: float = option(1.0, "Constant norm of every basis vector of A_aux and B_aux.")
    init: str = option("zero", "'zero': A_train starts at 0 so ΔW = 0; 'gaussian': both factors random.")
    init_std: float | None = option(None, "Std of the random factors; None means 1/sqrt(b).")

    def validate(self) -> None:
        for name in ("a", "b", "rank"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, f"lidb: {name} must be an integer >= 1, got {value!r}")
        require(self.a >= self.rank, f"lidb: a ({self.a}) must be >= rank ({self.rank})")
        require(self.b >= self.rank, f"lidb: b ({self.b}) must be >= rank ({self.rank})")
        require(self.aux_scale > 0, f"lidb: aux_scale must be > 0, got {self.aux_scale!r}")
        require(self.init in INITS, f"lidb: init must be one of {', '.join(INITS)}, got {self.init!r}")
        require(self.init_std is None or self.init_std > 0, f"lidb: init_std must be > 0, got {self.init_std!r}")


class LidbSpace(Space[LidbConfig]):
    name = "lidb"
    summary = "Rank-r LoRA inside frozen random orthonormal bases of width a and b (HyperDreamBooth §4.1)."
    config_class = LidbConfig

    def widths(self, layer: LayerSpec) -> tuple[int, int]:
        """(a, b) after clamping to the layer's dimensions."""
        a = min(self.config.a, layer.out_features)
        b = min(self.config.b, layer.in_features)
        if a < self.config.rank or b < self.config.rank:
            raise ConfigError(
                f"lidb: layer {layer.name} ({layer.out_features}x{layer.in_features}) "
                f"is too small for rank {self.config.rank}"
            )
        return a, b

    def describe(self, layer: LayerSpec) -> str | None:
        a, b = self.widths(layer)
        if (a, b) == (self.config.a, self.config.b):
            return None
        return f"a={self.config.a}, b={self.config.b} clamped to a={a}, b={b} for {layer.name}"

    def param_shapes(self, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
        a, b = self.widths(layer)
        rank = self.config.rank
        return {"A_train": (a, rank), "B_train": (rank, b)}

    def init_params(self, layer: LayerSpec, generator: torch.Generator) -> Tensors:
        shapes = self.param_shapes(layer)
        std = self.config.init_std or 1.0 / math.sqrt(shapes["B_train"][1])
        b_train = torch.randn(shapes["B_train"], generator=generator) * std
        if self.config.init == "zero":
            a_train = torch.zeros(shapes["A_train"])
        else:
            a_train = torch.randn(shapes["A_train"], generator=generator) * std
        return {"A_train": a_train, "B_train": b_train}

    def make_buffers(self, layer: LayerSpec, seed: int) -> Tensors:
        a, b = self.widths(layer)
        a_aux, b_aux = _bases(layer.out_features, layer.in_features, a, b, seed)
        # Scaling makes new tensors: callers never share the cached ones.
        return {"A_aux": a_aux * self.config.aux_scale, "B_aux": b_aux * self.config.aux_scale}

    def factors(self, params: Tensors, buffers: Tensors) -> tuple[Tensor, Tensor]:
        a_train, b_train = params["A_train"], params["B_train"]
        # Contract the tiny trained factors into the bases first: the forward then costs exactly
        # what a rank-r LoRA costs, instead of O(n·(a + b)) per token.
        up = buffers["A_aux"].to(a_train.dtype) @ a_train
        down = b_train @ buffers["B_aux"].to(b_train.dtype)
        return down, up

    def stacks_layers(self) -> bool:
        return True  # matrix products broadcast over leading dimensions, the bases' as well as the factors'

    def rank(self, layer: LayerSpec) -> int:
        return self.config.rank

    @classmethod
    def sample_config(cls, rng: random.Random, layer: LayerSpec) -> LidbConfig:
        rank = rng.randint(1, max(1, min(3, layer.out_features, layer.in_features)))
        a = rng.randint(rank, layer.out_features + 2)
        b = rng.randint(rank, layer.in_features + 2)
        aux_scale = rng.choice([1.0, 0.5, 3.0])
        # Every init, so the contract checks that each starts from the seed alone (its default-init property puts
        # init back itself). Drawn last: the sizes above, and the contract's cases pinned on them, stay as drawn.
        init, init_std = rng.choice(INITS), rng.choice([None, 0.02, 0.5])
        return LidbConfig(a=a, b=b, rank=rank, aux_scale=aux_scale, init=init, init_std=init_std)


# One SD1.5 adapter's 176 layers, each with its own seed: an adapter frozen into a rank-relaxed stack
# (personalize) or added again (each bench repeat, each UI run) finds its bases here instead of redoing
# 352 QRs (1.3 s on one CPU core). At most about 180 MB of float64 bases for SD1.5's largest layer set.
@functools.lru_cache(maxsize=256)
def _bases(out_features: int, in_features: int, a: int, b: int, seed: int) -> tuple[Tensor, Tensor]:
    """The unscaled (A_aux, B_aux) of a layer shape and seed."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    a_aux = F.orthonormal_columns(out_features, a, generator)
    b_aux = F.orthonormal_columns(in_features, b, generator).T.contiguous()
    return a_aux, b_aux
