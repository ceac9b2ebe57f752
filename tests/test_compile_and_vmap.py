"""An injected model under torch.compile(fullgraph=True) and torch.func.vmap, in no_grad inference.

The factors a no_grad call keeps are keyed on their tensors' storage; a compiled graph cannot compare data
pointers (every adapted layer broke the graph, and fullgraph=True failed from the second call) and a
vmapped param has no storage at all. Both compute the factors directly and give eager's result.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, vmap

import lowdim

SPACES = {"lora": dict(rank=2, init="gaussian"), "lidb": dict(a=4, b=4, rank=1, init="gaussian")}


def tiny_model(space_name: str) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    model.requires_grad_(False)
    lowdim.inject(model, lowdim.get_space(space_name, **SPACES[space_name]), ["0", "2", "4"], seed=1)
    return model


@pytest.mark.parametrize("space_name", sorted(SPACES))
def test_a_fullgraph_compile_runs_no_grad_inference_again_and_again_as_eager_does(space_name):
    torch._dynamo.reset()
    model = tiny_model(space_name)
    x = torch.randn(3, 8)
    with torch.no_grad():
        eager = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # dynamo is what broke; eager keeps it fast
    for _ in range(3):
        with torch.no_grad():
            assert torch.allclose(compiled(x), eager, atol=1e-6)
    with torch.no_grad():  # a trained step (in place) shows in the compiled model's next call
        next(p for p in model.parameters() if p.requires_grad).add_(0.5)
        assert torch.allclose(compiled(x), model(x), atol=1e-6)


def test_vmap_over_per_sample_params_without_gradients_equals_override():
    model = tiny_model("lora")
    adapters = lowdim.Adapters(model)
    x = torch.randn(4, 8)
    generator = torch.Generator().manual_seed(2)
    batched = {name: torch.randn(4, *param.shape, generator=generator)
               for name, param in model.named_parameters() if param.requires_grad}

    def one_sample(params, sample):
        return functional_call(model, params, (sample[None],))[0]

    per_layer: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in batched.items():  # "0.slots.default.params.up" -> layer "0", param "up"
        layer, _, rest = name.partition(".slots.default.params.")
        per_layer.setdefault(layer, {})[rest] = value
    with torch.no_grad():
        before = model(x)
        mapped = vmap(one_sample)(batched, x)
        with adapters.override("default", per_layer):
            expected = model(x)
        assert torch.allclose(mapped, expected, atol=1e-6)
        assert torch.equal(model(x), before)  # the stored params are back, and the kept factors are theirs
