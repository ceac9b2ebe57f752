"""What other libraries' wrappers do to lowdim's layers, refused in one line that names the cause.

torch.nn.utils.parametrize on an adapter's params replaces a Parameter by a computed value that the forward,
the optimiser's list and the files would not see (the forward failed with a bare KeyError). A peft LoRA layer
is a module lowdim does not adapt, and the layer inside it is skipped like the one inside lowdim's own
wrapper: the refusal said both "it is a Linear" and "it matches no linear layer".
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

import lowdim
from lowdim.errors import LowdimError


class Double(nn.Module):
    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return 2 * value


def test_parametrizing_an_adapter_param_is_refused_and_leaves_the_adapter_working():
    model = nn.Sequential(nn.Linear(16, 16)).requires_grad_(False)
    lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), ["0"], seed=0)
    x = torch.randn(4, 16)
    with torch.no_grad():
        before = model(x)
    params = lowdim.Adapters(model).slots()["0"].params
    with pytest.raises(LowdimError, match=r"layer 0: adapter param 'up' cannot be parametrized"):
        parametrize.register_parametrization(params, "up", Double())
    assert not parametrize.is_parametrized(params)
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert len(lowdim.Adapters(model).parameters()) == 2


class FakePeftLinear(nn.Module):
    """A stand-in with peft's module path and layout: the real layer holds its Linear as ``base_layer``."""

    def __init__(self) -> None:
        super().__init__()
        self.base_layer = nn.Linear(8, 8)
        self.lora_A = nn.ModuleDict({"default": nn.Linear(8, 2, bias=False)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x)


FakePeftLinear.__module__ = "peft.tuners.lora.layer"
FakePeftLinear.__qualname__ = FakePeftLinear.__name__ = "Linear"


def peft_model() -> nn.Module:
    model = nn.Sequential()
    model.add_module("attn", nn.Sequential())
    model.attn.add_module("query", FakePeftLinear())
    model.attn.add_module("value", nn.Linear(8, 8))
    return model


@pytest.mark.parametrize("pattern", ["*.query", "*.query.base_layer"])
def test_targeting_a_peft_layer_names_it_as_peft_s_and_says_what_to_do(pattern):
    space = lowdim.get_space("lora", rank=1)
    with pytest.raises(LowdimError) as refused:
        lowdim.inject(peft_model(), space, [pattern])
    message = str(refused.value)
    assert "attn.query" in message and "peft" in message and "peft.tuners.lora.layer.Linear" in message
    assert "merge_and_unload()" in message
    assert "leave out" not in message  # not the layer-type excuse, which was false


def test_a_real_peft_layer_is_refused_the_same_way():
    peft = pytest.importorskip("peft")
    model = nn.Sequential()
    model.add_module("query", nn.Linear(8, 8))
    model.add_module("value", nn.Linear(8, 8))
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["query"]))
    with pytest.raises(LowdimError, match=r"peft's LoRA layer.*merge_and_unload\(\)"):
        lowdim.inject(wrapped, lowdim.get_space("lora", rank=1), ["*.query"])


def test_the_layer_inside_lowdim_s_own_wrapper_points_at_the_wrapper():
    model = nn.Sequential(nn.Linear(8, 8))
    lowdim.inject(model, lowdim.get_space("lora", rank=1), ["0"], name="a")
    inside = r"'0.base_layer' is the layer inside lowdim's wrapper of layer 0: target '0'"
    with pytest.raises(LowdimError, match=inside):
        lowdim.inject(model, lowdim.get_space("lora", rank=1), ["0.base_layer"], name="b")
