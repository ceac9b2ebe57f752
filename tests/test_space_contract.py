"""The contract every registered space keeps, plugin spaces included.

Each property draws a random layer shape, a random valid config (``Space.sample_config``), a
seed and a dtype, then checks the space against its own definitions.
"""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim import functional as F
from lowdim.spaces.base import LayerSpec, Space

SPACES = sorted(lowdim.get_registry().spaces)
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    out_features = draw(st.integers(1, 24))
    in_features = draw(st.integers(1, 24))
    return {
        "layer": LayerSpec(draw(st.sampled_from(["blk.0.q", "blk.1.attn.v", "x"])), out_features, in_features),
        "rng": random.Random(draw(st.integers(0, 2**32 - 1))),
        "seed": draw(st.integers(0, 2**31 - 1)),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
    }


def build(space_name: str, case: dict) -> tuple[Space, dict, dict]:
    """A random config of the space with random (non-zero) params on the case's layer."""
    space_class = lowdim.get_registry().space_class(space_name)
    space = space_class(space_class.sample_config(case["rng"], case["layer"]))
    generator = torch.Generator().manual_seed(case["seed"])
    params = space.init_params(case["layer"], generator)
    params = {k: torch.randn(v.shape, generator=generator, dtype=case["dtype"]) for k, v in params.items()}
    buffers = space.make_buffers(case["layer"], F.layer_seed(case["seed"], case["layer"].name))
    buffers = {k: v.to(case["dtype"]) for k, v in buffers.items()}
    return space, params, buffers


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> bool:
    scale = max(1.0, float(b.detach().abs().max()) if b.numel() else 1.0)
    return torch.allclose(a, b, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale)


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_bypass_equals_dense_delta(space_name, case):
    space, params, buffers = build(space_name, case)
    x = torch.randn(3, 2, case["layer"].in_features, dtype=case["dtype"])
    expected = x @ space.delta(params, buffers).T
    assert close(space.bypass(x, params, buffers), expected, case["dtype"])


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_lora_factors_reproduce_delta_within_rank_bound(space_name, case):
    space, params, buffers = build(space_name, case)
    layer = case["layer"]
    down, up = space.factors(params, buffers)
    assert down.shape == (space.rank(layer), layer.in_features)
    assert up.shape == (layer.out_features, space.rank(layer))
    delta = space.delta(params, buffers)
    assert delta.shape == (layer.out_features, layer.in_features)
    assert close(up @ down, delta, case["dtype"])
    assert F.numerical_rank(delta) <= space.rank(layer)


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_shapes_counts_and_reproducible_init(space_name, case):
    space, _, _ = build(space_name, case)
    layer = case["layer"]
    first = space.init_params(layer, torch.Generator().manual_seed(case["seed"]))
    again = space.init_params(layer, torch.Generator().manual_seed(case["seed"]))
    assert {k: tuple(v.shape) for k, v in first.items()} == space.param_shapes(layer)
    assert all(torch.equal(first[k], again[k]) for k in first)
    trainable = space.trainable_names(layer)
    assert set(trainable) <= set(first)
    assert space.num_params(layer) == sum(first[k].numel() for k in trainable)
    seed = F.layer_seed(case["seed"], layer.name)
    one, two = space.make_buffers(layer, seed), space.make_buffers(layer, seed)
    assert all(torch.equal(one[k], two[k]) for k in one)


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), batch=st.integers(1, 4), tiles=st.integers(1, 2))
def test_batched_per_sample_equals_loop(space_name, case, batch, tiles):
    space, params, buffers = build(space_name, case)
    per_sample = [{k: torch.randn_like(v) for k, v in params.items()} for _ in range(batch)]
    stacked = {k: torch.stack([p[k] for p in per_sample]) for k in params}
    x = torch.randn(tiles * batch, 5, case["layer"].in_features, dtype=case["dtype"])
    batched = space.bypass(x, stacked, buffers)
    for j in range(tiles * batch):  # sample j uses adapter j % batch, as CFG-style tiling expects
        expected = space.bypass(x[j], per_sample[j % batch], buffers)
        assert close(batched[j], expected, case["dtype"])


def _model(layer: LayerSpec, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(layer.in_features, layer.out_features), nn.Tanh(),
                         nn.Linear(layer.out_features, layer.in_features)).to(dtype)


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases())
def test_default_init_leaves_model_output_unchanged(space_name, case):
    model = _model(case["layer"], case["dtype"])
    x = torch.randn(4, case["layer"].in_features, dtype=case["dtype"])
    before = model(x)
    lowdim.inject(model, lowdim.get_space(space_name), ["0", "2"], seed=case["seed"])
    assert torch.equal(model(x), before)


def _random_adapter(model: nn.Module, space_name: str, case: dict, scale: float):
    """A non-zero adapter on layers 0 and 2, an input, and the model's (bypass) output for it."""
    space, _, _ = build(space_name, case)
    adapters = lowdim.inject(model, space, ["0", "2"], seed=case["seed"], scale=scale)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    x = torch.randn(4, case["layer"].in_features, dtype=case["dtype"])
    return adapters, x, model(x)


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), scale=st.sampled_from([1.0, 0.5, -2.0]))
def test_merged_path_equals_bypass_path_and_unmerge_restores(space_name, case, scale):
    model = _model(case["layer"], case["dtype"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    adapters, x, bypass = _random_adapter(model, space_name, case, scale)
    adapters.merge("default")
    assert close(model(x), bypass, case["dtype"])
    adapters.unmerge("default")
    assert close(model(x), bypass, case["dtype"])
    adapters.remove_all()
    restored = model.state_dict()
    assert restored.keys() == weights.keys()
    assert all(close(restored[k], weights[k], case["dtype"]) for k in weights)


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), scale=st.sampled_from([1.0, -0.5]))
def test_merge_and_unload_leaves_a_plain_model_that_computes_the_bypass_output(space_name, case, scale):
    model = _model(case["layer"], case["dtype"])
    adapters, x, bypass = _random_adapter(model, space_name, case, scale)
    adapters.merge_and_unload()
    assert [type(m) for m in model] == [nn.Linear, nn.Tanh, nn.Linear] and adapters.names() == []
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert close(model(x), bypass, case["dtype"])


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), dtype=st.sampled_from(["fp32", "fp16", "bf16"]))
def test_save_load_round_trip(space_name, case, dtype, tmp_path_factory):
    model = _model(case["layer"], torch.float32)
    space, _, _ = build(space_name, case)
    adapters = lowdim.inject(model, space, ["0", "2"], seed=case["seed"])
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    path = tmp_path_factory.mktemp("rt") / "adapter.safetensors"
    lowdim.save_adapter(path, model, dtype=dtype)
    fresh = _model(case["layer"], torch.float32)
    lowdim.load_adapter(path, fresh, name="default")
    loaded = lowdim.Adapters(fresh).tensors("default")
    cast = lowdim.files.DTYPES[dtype]
    for layer, tensors in adapters.tensors("default").items():
        for key, value in tensors.items():
            # fp32 is bit-exact; fp16/bf16 equal the original rounded once to that dtype (|err| <= 2^-11 or 2^-8 rel.)
            assert torch.equal(loaded[layer][key], value.detach().to(cast).float())
    x = torch.randn(4, case["layer"].in_features)
    if dtype == "fp32":
        assert torch.equal(fresh(x), model(x))
