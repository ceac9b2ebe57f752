"""LoRA (Hu et al. 2021): ΔW = (alpha / r) · up @ down, with up zero at init by default."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import Tensor

from lowdim.spaces.base import LayerSpec, Space, SpaceConfig, Tensors, option, require

INITS = ("zero", "gaussian")


@dataclass
class LoraConfig(SpaceConfig):
    rank: int = option(1, "Rank r of the update; each layer trains r·(in + out) numbers.")
    alpha: float | None = option(None, "Scale numerator: ΔW is multiplied by alpha / rank. None means alpha = rank.")
    init: str = option("zero", "Init of the up matrix: 'zero' (ΔW = 0 at start) or 'gaussian'.")
    init_std: float = option(0.02, "Std of gaussian inits (the down matrix, and up when init='gaussian').")

    def validate(self) -> None:
        require(isinstance(self.rank, int) and self.rank >= 1, f"lora: rank must be an integer >= 1, got {self.rank!r}")
        require(self.init in INITS, f"lora: init must be one of {', '.join(INITS)}, got {self.init!r}")
        require(self.init_std > 0, f"lora: init_std must be > 0, got {self.init_std!r}")
        require(self.alpha is None or self.alpha > 0, f"lora: alpha must be > 0, got {self.alpha!r}")


class LoraSpace(Space[LoraConfig]):
    name = "lora"
    summary = "Low-rank update up·down of rank r (Hu et al. 2021)."
    config_class = LoraConfig

    @property
    def scaling(self) -> float:
        alpha = self.config.alpha if self.config.alpha is not None else self.config.rank
        return alpha / self.config.rank

    def param_shapes(self, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
        rank = self.config.rank
        return {"down": (rank, layer.in_features), "up": (layer.out_features, rank)}

    def init_params(self, layer: LayerSpec, generator: torch.Generator) -> Tensors:
        shapes = self.param_shapes(layer)
        std = self.config.init_std
        down = torch.randn(shapes["down"], generator=generator) * std
        if self.config.init == "zero":
            up = torch.zeros(shapes["up"])
        else:
            up = torch.randn(shapes["up"], generator=generator) * std
        return {"down": down, "up": up}

    def factors(self, params: Tensors, buffers: Tensors) -> tuple[Tensor, Tensor]:
        # A multiply by 1 is still a kernel launch per layer and forward, what bounds a GPU step at batch 1.
        return params["down"], params["up"] if self.scaling == 1.0 else params["up"] * self.scaling

    def stacks_layers(self) -> bool:
        return True  # a product with a number broadcasts over any leading dimension

    def describe(self, layer: LayerSpec) -> str | None:
        # Not clamped (peft does not either, and a file's shapes must not depend on the layer): said instead.
        most = min(layer.in_features, layer.out_features)
        if self.config.rank <= most:
            return None
        return (f"rank={self.config.rank} exceeds {layer.name}'s {layer.out_features}x{layer.in_features}: its update "
                f"has rank at most {most}, and the extra params add nothing")

    def rank(self, layer: LayerSpec) -> int:
        return self.config.rank

    @classmethod
    def sample_config(cls, rng: random.Random, layer: LayerSpec) -> LoraConfig:
        rank = rng.randint(1, max(1, min(8, layer.out_features, layer.in_features)))
        alpha = rng.choice([None, float(rank), 2.0 * rank, math.sqrt(rank)])
        # Every init, so the contract checks that each starts from the seed alone (its default-init property puts
        # init back itself). Drawn last: the draws above stay as they were.
        init, init_std = rng.choice(INITS), rng.choice([0.02, 0.5])
        return LoraConfig(rank=rank, alpha=alpha, init=init, init_std=init_std)
