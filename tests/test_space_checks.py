"""A plugin space's own mistakes are reported when the adapter is added, naming the space and the layer,
instead of surfacing later as a file error, a "platform difference" or a bare matmul error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import lowdim
from lowdim import Space, SpaceConfig, option


@dataclass
class UpOnlyConfig(SpaceConfig):
    rank: int = option(2, "Width r.")


class UpOnly(Space):
    """ΔW = up · down, down frozen and drawn from the seed: correct, the base of each mistake below."""

    name = "up-only"
    config_class = UpOnlyConfig

    def param_shapes(self, layer):
        return {"up": (layer.out_features, self.config.rank)}

    def init_params(self, layer, generator):
        return {"up": torch.zeros(layer.out_features, self.config.rank)}

    def make_buffers(self, layer, seed):
        return {"down": torch.randn(self.config.rank, layer.in_features, generator=torch.Generator().manual_seed(seed))}

    def factors(self, params, buffers):
        up = params["up"]
        return buffers["down"].to(up.dtype).expand(*up.shape[:-2], -1, -1), up


class WrongInitShape(UpOnly):
    def init_params(self, layer, generator):
        return {"up": torch.zeros(self.config.rank, layer.out_features)}


class TrainsWhatItDoesNotMake(UpOnly):
    def trainable_names(self, layer):
        return ["up", "scale"]


class GlobalRandomBuffers(UpOnly):
    def make_buffers(self, layer, seed):
        return {"down": torch.randn(self.config.rank, layer.in_features)}


class ClaimsStackingButFlattens(UpOnly):
    """Says its factors keep a leading layer dimension, but folds it into the rows."""

    def stacks_layers(self):
        return True

    def factors(self, params, buffers):
        up, down = params["up"], buffers["down"].to(params["up"].dtype)
        return down.reshape(-1, down.shape[-1]), up.reshape(-1, up.shape[-1])


class SwappedFactors(UpOnly):
    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return up, down


MISTAKES = {
    WrongInitShape: r"init_params gave \{'up': \(2, 6\)\}, but param_shapes says \{'up': \(6, 2\)\}",
    TrainsWhatItDoesNotMake: "trainable_names lists scale, which init_params does not make",
    GlobalRandomBuffers: "make_buffers gave different tensors for the same seed",
    SwappedFactors: r"factors gave down \(6, 2\), which must be \(r, 8\).* and up \(2, 8\), which must be "
                    r"\(6, r\)",
    ClaimsStackingButFlattens: r"stacks_layers\(\) is True, but factors of two stacked layers gave down \(4, 8\) "
                               r"and up \(12, 2\), not each layer's own factors \(2, 2, 8\) and \(2, 6, 2\)",
}


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 6))


@pytest.mark.parametrize("space_class", list(MISTAKES), ids=lambda c: c.__name__)
def test_a_space_mistake_is_blamed_on_the_space_and_layer_and_leaves_the_model_untouched(space_class):
    plain = model()
    expected = r"^space 'up-only' on layer 0 \(6x8\): " + MISTAKES[space_class]
    with pytest.raises(lowdim.LowdimError, match=expected) as error:
        lowdim.inject(plain, space_class(), ["0", "2"])
    assert str(error.value).endswith("(a bug in the space's code, not in the model or the options)")
    assert [type(m) for m in plain] == [nn.Linear, nn.ReLU, nn.Linear]  # no half-added adapter


def test_a_correct_space_passes_the_checks_and_trains():
    net = model()
    stacking = type("Stacking", (UpOnly,), {"stacks_layers": lambda self: True})  # its factors keep the dim
    lowdim.inject(model(), stacking(), ["0", "2"])
    adapters = lowdim.inject(net, UpOnly(), ["0", "2"], seed=3)
    assert adapters.info("default").num_params == 6 * 2 + 6 * 2
    assert torch.equal(net(torch.ones(1, 8)), net(torch.ones(1, 8)))


@pytest.fixture
def float64_default():
    """torch's default dtype set to float64 for one test, and put back whatever happens (review AH1)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize("space_name", sorted(lowdim.registry.get_registry().spaces))
def test_every_registered_space_adapts_a_float64_model_under_a_float64_default(float64_default, space_name):
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))  # made in float64, as the default says
    adapters = lowdim.inject(net, lowdim.get_space(space_name), ["0", "2"], name=space_name)
    assert adapters.info(space_name).num_params > 0
    out = net(torch.ones(2, 8))
    assert out.dtype == torch.float64 and bool(out.isfinite().all())


class InitsInHalf(UpOnly):
    def init_params(self, layer, generator):
        return {"up": torch.zeros(layer.out_features, self.config.rank, dtype=torch.float16)}


def test_under_a_float64_default_a_dtype_that_is_neither_it_nor_float32_is_refused_with_advice_that_holds(
        float64_default):
    with pytest.raises(lowdim.LowdimError) as raised:
        lowdim.inject(model(), InitsInHalf(), ["0", "2"])
    said = str(raised.value)
    assert said.startswith("space 'up-only' on layer 0 (6x8): init_params gave up as torch.float16; params must be "
                           "float32 or torch's default dtype, now torch.float64 (torch.zeros(...) without a dtype, "
                           "or .float())")
    assert torch.zeros(1).dtype == torch.float64  # the advice's torch.zeros(...) makes what is accepted
    lowdim.inject(model(), UpOnly(), ["0", "2"])  # as torch.zeros(...) without a dtype gives it


def test_the_default_dtype_is_float32_again_after_the_float64_tests():
    assert torch.get_default_dtype() == torch.float32
