"""VeRA (Kopiczko et al. 2023, "Vector-based Random Matrix Adaptation").

    ΔW = diag(b) · B · diag(d) · A        (torch orientation: ΔW is (out, in))

A (r, in) and B (out, r) are frozen random matrices regenerated from the layer seed; only the
scaling vectors d (r,) and b (out,) train, so a layer costs r + out numbers in a file.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import Tensor

from lowdim.errors import ConfigError
from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, Tensors, option, require

BASES = ("uniform", "gaussian")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class VeraConfig(SpaceConfig):
    rank: int = option(256, "Width r of the frozen random matrices A and B (clamped to min(out, in) per layer).")
    d_init: float = option(0.1, "Initial value of every entry of the trainable vector d (r,).")
    b_init: float = option(0.0, "Initial value of every entry of the trainable vector b (out,); 0 gives ΔW = 0.")
    basis: str = option("uniform", "Distribution of A and B: 'uniform' (Kaiming-uniform) or 'gaussian'.")

    def validate(self) -> None:
        require(
            isinstance(self.rank, int) and not isinstance(self.rank, bool) and self.rank >= 1,
            f"vera: rank must be an integer >= 1, got {self.rank!r}",
        )
        for name in ("d_init", "b_init"):
            value = getattr(self, name)
            require(_is_number(value), f"vera: {name} must be a finite number, got {value!r}")
        # The gradient of b is proportional to d and vice versa: both at zero, neither ever moves.
        require(
            self.d_init != 0 or self.b_init != 0,
            f"vera: d_init and b_init cannot both be 0 (training would never start), "
            f"got d_init={self.d_init!r}, b_init={self.b_init!r}",
        )
        require(self.basis in BASES, f"vera: basis must be one of {', '.join(BASES)}, got {self.basis!r}")


class VeraSpace(Space[VeraConfig]):
    name = "vera"
    summary = "Frozen random A, B scaled by trainable vectors: diag(b)·B·diag(d)·A (Kopiczko et al. 2023)."
    config_class = VeraConfig
    # `lowdim train`/`precompute` without --lr. A sweep of 100 steps on TinyFaces: at LoRA's 1e-4, ΔW/W moved
    # 7x less than LoRA's (1.5e-4 against 1.1e-3); 1e-2 moves it as far as LiDB's default 2e-3 does (5.8e-2 against
    # 8.3e-2), and 3e-2 already reaches 21%. The paper, too, trains its vectors faster than LoRA (about 10x).
    learning_rate = 1e-2

    def width(self, layer: LayerSpec) -> int:
        """r after clamping: beyond min(out, in), extra columns cannot raise rank(ΔW)."""
        if layer.out_features < 1 or layer.in_features < 1:
            shape = f"{layer.out_features}x{layer.in_features}"
            raise ConfigError(f"vera: layer {layer.name} has an empty weight ({shape})")
        return min(self.config.rank, layer.out_features, layer.in_features)

    def describe(self, layer: LayerSpec) -> str | None:
        width = self.width(layer)
        if width == self.config.rank:
            return None
        return f"rank={self.config.rank} clamped to rank={width} for {layer.name}"

    def param_shapes(self, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
        return {"d": (self.width(layer),), "b": (layer.out_features,)}

    def init_params(self, layer: LayerSpec, generator: torch.Generator) -> Tensors:
        # Constant inits, as in the paper: the randomness lives in the frozen A and B.
        shapes = self.param_shapes(layer)
        return {
            "d": torch.full(shapes["d"], float(self.config.d_init)),
            "b": torch.full(shapes["b"], float(self.config.b_init)),
        }

    def make_buffers(self, layer: LayerSpec, seed: int) -> Tensors:
        width = self.width(layer)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        # Draw A before B, always: the order is part of the file format (buffers are not stored).
        a = self._random((width, layer.in_features), generator)
        b = self._random((layer.out_features, width), generator)
        return {"A": a, "B": b}

    def _random(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        # Scale by 1/sqrt(fan_in) so x @ A.T and h @ B.T keep the magnitude of their input,
        # whatever the layer size: d and b then mean the same thing on every layer.
        bound = 1.0 / math.sqrt(shape[1])
        if self.config.basis == "gaussian":
            return torch.randn(shape, generator=generator, dtype=torch.float64) * bound
        uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
        return (2.0 * uniform - 1.0) * bound

    def factors(self, params: Tensors, buffers: Tensors) -> tuple[Tensor, Tensor]:
        d, b = params["d"], params["b"]
        # Fold each vector into its neighbouring matrix: the forward costs what a rank-r LoRA
        # costs, and leading batch dims of d and b broadcast against the shared A and B.
        down = d.unsqueeze(-1) * buffers["A"].to(d.dtype)
        up = b.unsqueeze(-1) * buffers["B"].to(b.dtype)
        return down, up

    def rank(self, layer: LayerSpec) -> int:
        return self.width(layer)

    @classmethod
    def sample_config(cls, rng: random.Random, layer: LayerSpec) -> VeraConfig:
        # Rank is drawn independently of the layer so that clamping gets exercised too.
        # b_init stays 0 so every sampled config still starts from ΔW = 0.
        return VeraConfig(
            rank=rng.randint(1, 8),
            d_init=rng.choice([0.1, 0.5, 1.0, -0.3]),
            b_init=0.0,
            basis=rng.choice(BASES),
        )
