"""A call without gradients (generation) reuses an adapter's factors until a tensor they are made of changes.

What it keeps must always be what the adapter is now: after an in-place update, a load, a move or a cast,
a merge or a disable, the output is the one computed from scratch. And it must pay: a kept adapter's call
launches per layer only the base product and its two factor products, the second adding itself to the first.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from dispatch_ops import Operations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim import functional as F
from lowdim.spaces.base import LayerSpec

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    REGISTRY = lowdim.Registry.from_plugins(load_entry_points=True)
SPACES = sorted(REGISTRY.spaces)


@pytest.fixture(autouse=True, scope="module")
def _registry():
    with lowdim.use_registry(REGISTRY):
        yield


def adapted_linear(space_name: str, rng: random.Random, seed: int, in_features: int, out_features: int,
                   dtype: torch.dtype) -> tuple[nn.Module, lowdim.Adapters]:
    layer = LayerSpec("0", out_features, in_features)
    space = REGISTRY.make_space(space_name, REGISTRY.space_class(space_name).sample_config(rng, layer))
    model = nn.Sequential(nn.Linear(in_features, out_features)).to(dtype)
    adapters = lowdim.Adapters(model)
    adapters.add("a", space, ["0"], seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-zero factors, so a stale one would show
        for param in adapters.parameters("a"):
            param.copy_(torch.randn(param.shape, generator=generator))
    return model, adapters


def from_scratch(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    wrapper = model[0]
    result = wrapper.base_layer(x)
    for slot in wrapper.slots.values():
        factors = slot.live_factors()
        if factors is not None:  # the forward's own arithmetic, so that only what is kept can differ
            result = F.lowrank_add_(result, x, factors[0].to(x.dtype), factors[1].to(x.dtype), slot.scale)
    return result


@pytest.mark.parametrize("space_name", SPACES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), in_features=st.integers(1, 16), out_features=st.integers(1, 16),
       dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float64]))
def test_what_a_call_keeps_is_always_the_adapter_as_it_is_now(space_name, seed, in_features, out_features, dtype):
    model, adapters = adapted_linear(space_name, random.Random(seed), seed, in_features, out_features, dtype)
    x = torch.randn(3, in_features, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)

    def same_as_from_scratch() -> torch.Tensor:
        with torch.no_grad():
            out = model(x)
            assert torch.equal(out, from_scratch(model, x))
            assert torch.equal(model(x), out)  # the second call, from what the first kept
        return out

    first = same_as_from_scratch()
    param = adapters.parameters("a")[0]
    with torch.no_grad():
        param.mul_(-2.0).add_(1.0)  # in place: what an optimizer step does
    same_as_from_scratch()
    adapters.load_tensors("a", {layer: {k: v + 0.5 for k, v in tensors.items()}
                                for layer, tensors in adapters.tensors("a").items()})
    same_as_from_scratch()
    adapters.set_scale("a", 0.5)
    same_as_from_scratch()
    adapters.disable("a")
    assert torch.equal(same_as_from_scratch(), model[0].base_layer(x).detach())
    adapters.enable("a")
    adapters.merge("a")  # folded into the weight: nothing is added at call time
    same_as_from_scratch()
    adapters.unmerge("a")
    model.to(torch.float64)  # a cast moves the params: the kept factors are for the old ones
    x = x.to(torch.float64)
    same_as_from_scratch()
    assert first.shape == (3, out_features)


@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("optimizer", ["adamw", "adamw-fused", "sgd-fused"])
def test_an_optimizer_step_is_seen_even_when_torch_does_not_count_it_as_a_write(space_name, optimizer):
    # A fused optimizer writes the parameters without bumping their version counter (torch 2.13): the
    # pictures drawn after training must still be the trained adapter's, not the ones drawn before it.
    model, adapters = adapted_linear(space_name, random.Random(1), 1, 8, 8, torch.float32)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
    kind, _, fused = optimizer.partition("-")
    parameters = adapters.parameters("a")
    step = (torch.optim.AdamW(parameters, lr=0.1, fused=bool(fused) or None) if kind == "adamw"
            else torch.optim.SGD(parameters, lr=0.1, momentum=0.9, fused=True))
    with torch.no_grad():
        before = model(x)  # kept
    for _ in range(2):
        step.zero_grad()
        model(x).pow(2).sum().backward()
        step.step()
    with torch.no_grad():
        after = model(x)
        assert torch.equal(after, from_scratch(model, x))
    assert not torch.equal(after, before)


@pytest.mark.parametrize("space_name", ["lora", "lidb"])
def test_a_kept_adapters_call_launches_only_the_update_itself(space_name):
    model, _ = adapted_linear(space_name, random.Random(0), 0, 32, 32, torch.bfloat16)
    x = torch.randn(2, 5, 32, dtype=torch.bfloat16)

    with torch.no_grad():
        model(x)
        with Operations() as count:
            model(x)
    # The base layer's addmm, the down product, the up product that adds itself to the base's output: no
    # cast of fp32 factors to bf16, and for LiDB no product of its frozen bases with its trained vectors.
    assert count.ops == {"addmm": 1, "mm": 1, "addmm_": 1}
    with Operations() as training:  # with gradients the factors are made each call, as autograd needs
        model(x).float().sum().backward()
    assert training.ops["_to_copy"] >= 2
