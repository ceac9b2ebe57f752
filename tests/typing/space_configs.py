"""A plugin author's space, generic over its config as docs/plugins.md writes it, for a type checker to read (never
run): ``class MySpace(Space[MyConfig])`` makes ``self.config`` a MyConfig with no re-annotation, a misspelt option
or a config_class of another config is an error, and a bare ``Space`` still means any space.
``tests/test_typing_user_scripts.py`` runs mypy on it; a line ending ``# expect: CODE`` must be that error, and
every other line must pass."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from typing_extensions import assert_type

import lowdim
from lowdim import LayerSpec, Space, SpaceConfig, option
from lowdim.spaces import LidbSpace, LoraConfig, LoraSpace, StackSpace


@dataclass
class WidthConfig(SpaceConfig):
    rank: int = option(2, "Width of the update.")
    scale: float = option(1.0, "Multiplies the update.")


class WidthSpace(Space[WidthConfig]):
    name = "width"
    config_class = WidthConfig

    def param_shapes(self, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
        return {"up": (layer.out_features, self.config.rank)}  # an option of WidthConfig, no re-annotation

    def init_params(self, layer: LayerSpec, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"up": torch.zeros(layer.out_features, self.config.rank)}

    def factors(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        up = params["up"] * self.config.scale
        return torch.ones(self.config.rank, 4), up

    @classmethod
    def sample_config(cls, rng: random.Random, layer: LayerSpec) -> WidthConfig:
        return cls.config_class(rank=rng.randint(1, 4))

    def misspelt(self) -> None:
        print(self.config.rnak)  # expect: attr-defined


class ConfigOfAnotherSpace(Space[WidthConfig]):
    name = "mismatched"
    config_class = LoraConfig  # expect: assignment


def configs(width: WidthSpace, lora: LoraSpace, lidb: LidbSpace, stack: StackSpace) -> None:
    assert_type(width.config, WidthConfig)
    assert_type(WidthSpace.config_class, type[WidthConfig])
    assert_type(lora.config, LoraConfig)
    assert_type(lidb.config.rank, int)
    assert_type(stack.config.merge_frozen, bool)
    WidthSpace(WidthConfig(rank=3))
    WidthSpace(rank=3)


def any_space(space: Space) -> SpaceConfig:
    """A bare Space is Space[SpaceConfig] (no missing-parameters error under --strict), and every space is one."""
    assert_type(space.config, SpaceConfig)
    spaces: list[Space] = [space, WidthSpace(), LoraSpace(), lowdim.get_space("lidb")]
    classes: list[type[Space]] = [WidthSpace, LoraSpace, LidbSpace, StackSpace]
    for space_class in classes:  # what `lowdim spaces -v` and the registry do: read config_class off any space class
        assert_type(space_class.config_class, type[SpaceConfig])
    print(classes[0].config_class().to_dict(), spaces)
    return space.config
