"""`Space` is generic over its config for type checkers (tests/typing/space_configs.py); at run time a space
declared as ``Space[MyConfig]`` is an ordinary space: it registers, builds, checks its config, reprs and pickles
as one declared on a bare ``Space`` does, and the built-in spaces are what they were."""

from __future__ import annotations

import pickle
import types
from dataclasses import dataclass

import pytest
import torch

import lowdim
from lowdim import LayerSpec, Space, SpaceConfig, option
from lowdim.hookspecs import hookimpl
from lowdim.spaces import LidbSpace, LoraConfig, LoraSpace, StackSpace, TextualInversionSpace


@dataclass
class WidthConfig(SpaceConfig):
    rank: int = option(2, "Width of the update.")


class WidthSpace(Space[WidthConfig]):
    name = "width"
    config_class = WidthConfig

    def param_shapes(self, layer: LayerSpec) -> dict[str, tuple[int, ...]]:
        return {"up": (layer.out_features, self.config.rank)}

    def init_params(self, layer: LayerSpec, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {"up": torch.zeros(layer.out_features, self.config.rank)}

    def make_buffers(self, layer: LayerSpec, seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return {"down": torch.randn(self.config.rank, layer.in_features, generator=generator, dtype=torch.float64)}

    def factors(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        up = params["up"]
        down = buffers["down"].to(up.dtype)
        return down.expand(*up.shape[:-2], *down.shape[-2:]), up


def test_a_space_on_a_subscripted_space_registers_builds_and_adapts_a_layer() -> None:
    plugin = types.ModuleType("width_plugin")
    plugin.register_spaces = hookimpl(lambda register: register(WidthSpace))  # type: ignore[attr-defined]
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", plugin])
    assert registry.spaces["width"].value is WidthSpace
    with lowdim.use_registry(registry):
        space = lowdim.get_space("width", rank=3)
        assert isinstance(space, Space) and isinstance(space, WidthSpace)
        assert issubclass(WidthSpace, Space) and Space in WidthSpace.__mro__
        assert space.config == WidthConfig(rank=3)
        assert repr(space) == "WidthSpace(WidthConfig(rank=3))"
        adapters = lowdim.inject(torch.nn.Sequential(torch.nn.Linear(4, 5)), space, ["0"], seed=1)
        assert adapters.info("default").num_params == 5 * 3


def test_a_config_of_another_space_is_still_refused_in_one_line() -> None:
    with pytest.raises(lowdim.ConfigError, match="^space 'width' expects a WidthConfig$"):
        WidthSpace(LoraConfig())


@pytest.mark.parametrize("space", [LoraSpace(rank=3), LidbSpace(rank=2), StackSpace(), TextualInversionSpace(),
                                   WidthSpace(rank=2)], ids=lambda space: space.name)
def test_spaces_pickle_and_repr_as_before(space: Space) -> None:
    again = pickle.loads(pickle.dumps(space))
    assert type(again) is type(space) and again.config == space.config
    assert repr(space) == f"{type(space).__name__}({space.config})"
    assert "config" in vars(space) and "config_class" not in vars(space)  # still an instance attribute, as pickled


def test_a_bare_space_and_its_subscripts_are_the_one_run_time_class() -> None:
    assert LoraSpace.__mro__[1] is Space
    assert Space[LoraConfig].__origin__ is Space  # type: ignore[attr-defined]
    assert isinstance(LoraSpace(), Space)
    assert LoraSpace.config_class is LoraConfig and not hasattr(Space, "config_class")
