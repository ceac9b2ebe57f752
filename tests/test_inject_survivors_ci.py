"""What review CI's mutants showed no inject test held: a frozen part merged at a scale other than 1 comes out
exactly, a full merge after it adds only the trainable part, a second merge adds nothing, ``.weight`` is the base
plus every adapter at its scale, ``lora_factors`` keeps the scale, a compiled forward sees a scale set after its
first call, and per-sample (``batch=``) adapters apply the scale and pair sample j with adapter j % B."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

import lowdim
from lowdim.injection.select import LayerSet

# scales away from 1, where a mutant that uses 1 (or none) instead of the adapter's scale shows
SCALES = st.sampled_from([0.5, -0.7, 0.3, 2.0])


def randomized(adapters: lowdim.Adapters, name: str, seed: int = 0) -> None:
    """Nonzero values everywhere, so that every part of the adapter changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in adapters.parameters(name):
            param.copy_(torch.randn(param.shape, generator=generator))


def relaxed_model(scale: float) -> tuple[nn.Sequential, lowdim.Adapters, torch.Tensor]:
    """A lidb adapter at ``scale`` relaxed into a stack named "fast" whose frozen part is not merged yet; returns
    the base weight as it was before anything was merged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6)).requires_grad_(False)
    base = model[0].weight.detach().clone()
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4), ["0"], name="p")
    randomized(adapters, "p")
    adapters.set_scale("p", scale)
    lowdim.relax_rank(adapters, "p", "fast", lowdim.get_space("lora", rank=2), merge_frozen=False)
    randomized(adapters, "fast", seed=1)
    return model, adapters, base


@settings(max_examples=4, deadline=None)
@given(scale=SCALES)
def test_unmerging_a_frozen_part_merged_at_any_scale_restores_the_base_weight(scale):
    model, adapters, base = relaxed_model(scale)
    adapters.merge("fast", part="frozen")
    assert not torch.allclose(model[0].base_layer.weight, base, atol=1e-3)
    adapters.unmerge("fast")
    assert torch.allclose(model[0].base_layer.weight, base, atol=1e-5)


@settings(max_examples=4, deadline=None)
@given(scale=SCALES)
def test_a_full_merge_after_a_frozen_merge_adds_only_the_trainable_part_and_a_second_merge_adds_nothing(scale):
    model, adapters, base = relaxed_model(scale)
    x = torch.randn(3, 8)
    with torch.no_grad():
        live = model(x)
        adapters.merge("fast", part="frozen")
        assert torch.allclose(model(x), live, atol=1e-5)
        adapters.merge("fast")
        merged_weight = model[0].base_layer.weight.detach().clone()
        assert torch.allclose(model(x), live, atol=1e-5)
        adapters.merge("fast")  # already merged: the code skips it, so the weight must not move
        assert torch.equal(model[0].base_layer.weight, merged_weight)
        assert torch.allclose(model(x), live, atol=1e-5)
    adapters.unmerge("fast")
    assert torch.allclose(model[0].base_layer.weight, base, atol=1e-5)


def test_a_second_merge_of_a_plain_adapter_adds_nothing():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    randomized(adapters, "default")
    adapters.set_scale("default", 0.5)
    x = torch.randn(3, 8)
    with torch.no_grad():
        live = model(x)
        adapters.merge("default")
        once = model[0].base_layer.weight.detach().clone()
        adapters.merge("default")
        assert torch.equal(model[0].base_layer.weight, once)
        assert torch.allclose(model(x), live, atol=1e-5)


def two_scaled_adapters(scale_a: float, scale_b: float) -> tuple[nn.Sequential, lowdim.Adapters]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"], name="a")
    adapters.add("b", lowdim.get_space("lora", rank=2), ["0"])
    randomized(adapters, "a")
    randomized(adapters, "b", seed=1)
    adapters.set_scale("a", scale_a)
    adapters.set_scale("b", scale_b)
    return model, adapters


@settings(max_examples=4, deadline=None)
@given(scale_a=SCALES, scale_b=SCALES)
def test_the_wrapped_weight_is_the_base_plus_every_adapter_at_its_scale(scale_a, scale_b):
    model, adapters = two_scaled_adapters(scale_a, scale_b)
    layer = model[0]
    expected = layer.base_layer.weight + adapters.delta("a", "0") + adapters.delta("b", "0")
    assert torch.allclose(layer.weight, expected, atol=1e-5)
    x = torch.randn(3, 8)
    with torch.no_grad():  # what a fused fast path (nn.MultiheadAttention's out_proj) computes
        assert torch.allclose(F.linear(x, layer.weight, layer.bias), layer(x), atol=1e-5)


@settings(max_examples=4, deadline=None)
@given(scale=SCALES)
def test_lora_factors_keep_the_layer_scale(scale):
    _, adapters = two_scaled_adapters(scale, 1.0)
    down, up = adapters.lora_factors("a")["0"]
    assert torch.allclose(up @ down, adapters.delta("a", "0"), atol=1e-5)
    assert not torch.allclose(up @ down, adapters.delta("a", "0") / scale, atol=1e-3)


def test_a_scale_set_after_the_first_compiled_call_reaches_the_compiled_forward():
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available")
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), ["0"], seed=1)
    randomized(adapters, "default")
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    x = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)
        adapters.set_scale("default", 0.5)
        eager = model(x)
        assert torch.allclose(compiled(x), eager, atol=1e-5)


def one_sample_outputs(
    make: Callable[[], nn.Module], batched: lowdim.Adapters, layers: list[str] | LayerSet, inputs: torch.Tensor,
    scale: float, base: nn.Module,
) -> list[torch.Tensor]:
    """Each sample run alone through a model holding just that sample's adapter (j % B) at ``scale``."""
    tensors = batched.tensors("default")
    batch = next(iter(next(iter(tensors.values())).values())).shape[0]
    outputs = []
    for sample in range(inputs.shape[0]):
        single = nn.Sequential(make()).requires_grad_(False)
        single[0].load_state_dict(base.state_dict())
        one = lowdim.inject(single, lowdim.get_space("lora", rank=2), layers)
        one.load_tensors("default", {layer: {k: v[sample % batch] for k, v in t.items()}
                                     for layer, t in tensors.items()})
        one.set_scale("default", scale)
        with torch.no_grad():
            outputs.append(single(inputs[sample : sample + 1])[0])
    return outputs


@settings(max_examples=3, deadline=None)
@given(scale=SCALES)
def test_per_sample_linear_adapters_apply_the_scale(scale):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"], batch=2)
    randomized(adapters, "default")
    adapters.set_scale("default", scale)
    x = torch.randn(4, 8)
    with torch.no_grad():
        batched = model(x)
    expected = one_sample_outputs(lambda: nn.Linear(8, 6), adapters, ["0"], x, scale, model[0].base_layer)
    for sample, output in enumerate(expected):
        assert torch.allclose(batched[sample], output, atol=1e-5), sample


def test_per_sample_embedding_adapters_pair_each_sample_with_its_own_adapter():
    torch.manual_seed(0)
    layers = LayerSet("e", ("0",), types=("embedding",))
    model = nn.Sequential(nn.Embedding(10, 4)).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), layers, batch=2)
    randomized(adapters, "default")
    adapters.set_scale("default", 0.5)
    ids = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])  # CFG-style tiling: sample j uses adapter j % 2
    with torch.no_grad():
        batched = model(ids)
    expected = one_sample_outputs(lambda: nn.Embedding(10, 4), adapters, layers, ids, 0.5, model[0].base_layer)
    for sample, output in enumerate(expected):
        assert torch.allclose(batched[sample], output, atol=1e-5), sample
