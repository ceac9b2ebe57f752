"""The fp32 scale buffer a compiled forward reads (``lowdim_scale``): a cast model keeps it fp32, so the compiled
model scales as eager does; a slot pickled before slots had it gets it back; and a scale set after the model was
moved under ``torch.inference_mode()`` takes effect instead of failing on an inference tensor."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

import lowdim
from lowdim.injection.layer import SCALE


def exact_lora_model() -> tuple[nn.Module, lowdim.Adapters]:
    """A zero base and factors of ones and threes: every product is exact in fp16 and bf16, so a compiled and an
    eager forward differ only where the scale they multiply by does."""
    model = nn.Sequential(nn.Linear(8, 4)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"], seed=1)
    params = model[0].slots["default"].params
    with torch.no_grad():
        model[0].base_layer.weight.zero_()
        model[0].base_layer.bias.zero_()
        params["down"].fill_(1.0)
        params["up"].fill_(3.0)
    return model, adapters


@pytest.mark.parametrize("cast", [nn.Module.half, lambda model: model.to(torch.bfloat16)], ids=["half", "bf16"])
def test_a_cast_model_keeps_its_scale_fp32_and_compiles_to_eager_s_result(cast):
    torch._dynamo.reset()
    model, adapters = exact_lora_model()
    adapters.set_scale("default", 0.3)  # 0.300048828125 in fp16, 0.30078125 in bf16
    cast(model)
    dtype = model[0].base_layer.weight.dtype
    held = getattr(model[0].slots["default"], SCALE)
    assert held.dtype == torch.float32 and held.item() == torch.tensor(0.3).item()
    x = torch.ones(2, 8, dtype=dtype)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True, backend="eager")(x)
    assert torch.equal(compiled, eager)


def test_a_slot_pickled_without_the_scale_buffer_gets_it_back():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), ["0", "2"], seed=1)
    adapters.set_scale("default", 0.7)
    for layer in (model[0], model[2]):  # as an object of an older lowdim was pickled (torch.save(model))
        del layer.slots["default"]._buffers[SCALE]
    loaded = pickle.loads(pickle.dumps(model))
    assert getattr(loaded[0].slots["default"], SCALE).item() == pytest.approx(0.7)
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.allclose(torch.compile(loaded, fullgraph=True, backend="eager")(x), model(x), atol=1e-6)


def test_a_scale_set_after_moving_the_model_under_inference_mode_takes_effect():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), ["0"], seed=1)
    x = torch.randn(3, 8)
    with torch.no_grad():
        full = model(x)
    with torch.inference_mode():  # a notebook cell that moves the model: the buffer is made again in there
        model.to("cpu")
    adapters.set_scale("default", 0.0)
    assert getattr(model[0].slots["default"], SCALE).item() == 0.0
    with torch.no_grad():
        assert torch.equal(model(x), model[0].base_layer(x)) and not torch.equal(full, model[0].base_layer(x))
