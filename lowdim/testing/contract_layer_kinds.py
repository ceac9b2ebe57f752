"""The space contract's properties on the layers that are no ``nn.Linear`` (``lowdim.testing.space_contract``
collects them with the rest): an ``nn.Embedding``, whose lookup is a row of W + scale·ΔW, and a 1x1 ``nn.Conv2d``,
which is W + scale·ΔW on every pixel. Both run their own forward path in the wrapper (the update made apart, then
scaled and added), so each draws the adapter's scale as the linear properties do."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.testing.contract_cases import PROPERTY, SPACES, cases, close, make_space
from lowdim.testing.references import reference_delta

SCALES = st.sampled_from([1.0, 0.5, -2.0])


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), batch=st.integers(1, 2), scale=SCALES)
def test_on_an_embedding_a_lookup_is_a_row_of_the_spaces_update(space_name, case, batch, scale):
    layer, dtype = case["layer"], case["dtype"]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(layer.out_features, layer.in_features))
    targets = lowdim.LayerSet("table", ("0",), types=("embedding",))
    adapters = lowdim.inject(model, make_space(space_name, case), targets, seed=case["seed"], scale=scale)
    model.to(dtype)  # params follow, frozen bases stay fp32 (exact in fp64), as in ``Injected``
    base = model[0].base_layer.weight.detach().clone()
    slot = adapters.slots("default")["0"]
    given_tensors = {name: torch.randn(batch, *shape, dtype=dtype)
                     for name, shape in slot.space.param_shapes(slot.layer).items()}
    ids = torch.randint(0, layer.out_features, (2 * batch, 5))
    deltas = [scale * reference_delta(slot.space, {k: v[j] for k, v in given_tensors.items()}, slot.buffers_dict())
              for j in range(batch)]
    with adapters.override("default", {"0": given_tensors}):  # sample j uses adapter j % batch
        output = model(ids)
    expected = torch.stack([(base + deltas[j % batch])[ids[j]] for j in range(len(ids))])
    assert close(output, expected, dtype), f"at scale {scale}, a lookup is off the row of W + scale·ΔW"
    adapters.load_tensors("default", {"0": {k: v[0] for k, v in given_tensors.items()}})
    assert close(model(ids), (base + deltas[0])[ids], dtype), f"at scale {scale}, a lookup is off W + scale·ΔW"
    adapters.merge("default")
    merged = model[0].base_layer.weight
    with torch.no_grad():  # a merged model is evaluated, not trained: with grad on, lowdim warns it gets none
        assert close(merged, base + deltas[0], dtype) and close(model(ids), (base + deltas[0])[ids], dtype)
        if getattr(slot.space, "learns_tokens", False):  # a token space touches its own rows only, bit for bit
            untouched = layer.out_features - slot.space.rank(slot.layer)
            assert torch.equal(merged[:untouched], base[:untouched])
            assert torch.equal(model(ids)[ids < untouched], base[ids[ids < untouched]])


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), scale=SCALES, pixels=st.tuples(st.integers(1, 3), st.integers(1, 3)))
def test_on_a_1x1_convolution_every_pixel_gets_the_spaces_update(space_name, case, scale, pixels):
    layer, dtype = case["layer"], case["dtype"]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(layer.in_features, layer.out_features, 1))
    adapters = lowdim.inject(model, make_space(space_name, case), ["0"], seed=case["seed"], scale=scale)
    slot = adapters.slots("default")["0"]
    with torch.no_grad():  # a non-zero update: ΔW = 0 would hide a scale the path leaves out
        for param in slot.params.values():
            param.copy_(torch.randn_like(param))
    model.to(dtype)  # params follow, frozen bases stay fp32 (exact in fp64), as in ``Injected``
    conv = model[0].base_layer
    delta = reference_delta(slot.space, {k: v.detach().double() for k, v in slot.params.items()},
                            {k: v.double() for k, v in slot.buffers_dict().items()})
    weight = conv.weight.detach().double() + scale * delta.reshape(conv.weight.shape)  # fp64: the space's math
    x = torch.randn(2, layer.in_features, *pixels, dtype=dtype)
    expected = nn.functional.conv2d(x.double(), weight, conv.bias.detach().double())
    assert close(model(x).double(), expected, dtype), f"at scale {scale}, the output is off a conv by W + scale·ΔW"
    adapters.merge("default")
    assert close(conv.weight.double(), weight, dtype), f"merged at scale {scale}, the weight is off W + scale·ΔW"
    with torch.no_grad():  # evaluated as a merged model is (with grad on, lowdim warns it gets no gradient)
        merged_output = model(x).double()
    assert close(merged_output, expected, dtype), f"merged at scale {scale}, the output is off the space's math"
