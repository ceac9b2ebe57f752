"""Merges that could not write the update into a layer's weight are refused before anything changes, naming the
layer, its type and why: a hook-based weight_norm or spectral_norm (the hook rebuilds the weight at every call),
a weight that is not a float lowdim can add to (int8, fp8, torch's quantized tensors) and an embedding with
max_norm (torch renormalises its rows in place). A layer subclass with its own forward merges with a warning."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError


def space() -> lowdim.Space:
    return lowdim.get_space("lora", rank=2, init="gaussian", init_std=0.3)


def adapted(first: nn.Module, targets: lowdim.LayerSet | list[str] | None = None):
    net = nn.Sequential(first, nn.ReLU(), nn.Linear(8, 4)).eval()
    net.requires_grad_(False)
    return net, lowdim.inject(net, space(), targets or ["0", "2"], seed=1)


def hooked(kind: str) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(8, 8)
    with warnings.catch_warnings():  # the hook-based forms are deprecated, and still in many checkpoints
        warnings.simplefilter("ignore", FutureWarning)
        return torch.nn.utils.weight_norm(layer) if kind == "weight_norm" else torch.nn.utils.spectral_norm(layer)


def assert_refused_and_unchanged(net: nn.Module, adapters: lowdim.Adapters, call: str, *words: str) -> None:
    x = torch.randn(3, 8)
    with torch.no_grad():
        before = net(x)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(LowdimError) as caught:
        getattr(adapters, call)()
    message = str(caught.value)
    assert "\n" not in message and "keep adapter 'default' unmerged" in message
    for word in ("layer 0", *words):
        assert word in message, message
    assert adapters.names() == ["default"]
    assert all(slot.merged_scale is None for slot in adapters.slots().values())
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["weight_norm", "spectral_norm"])
@pytest.mark.parametrize("call", ["merge", "merge_and_unload"])
def test_a_hook_based_weight_norm_refuses_a_merge(kind: str, call: str) -> None:
    net, adapters = adapted(hooked(kind))
    assert_refused_and_unchanged(net, adapters, call, "(Linear)", kind)


class Int8Linear(nn.Linear):
    """Weight-only int8 with a per-row scale, dequantised in forward (the bitsandbytes / quanto pattern)."""

    def __init__(self) -> None:
        super().__init__(8, 8)
        scale = self.weight.detach().abs().amax(1, keepdim=True) / 127
        self.weight = nn.Parameter(torch.round(self.weight.detach() / scale).to(torch.int8), requires_grad=False)
        self.register_buffer("w_scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight.float() * self.w_scale, self.bias)


@pytest.mark.parametrize("call", ["merge", "merge_and_unload"])
def test_an_int8_weight_refuses_a_merge(call: str) -> None:
    torch.manual_seed(0)
    net, adapters = adapted(Int8Linear())
    assert_refused_and_unchanged(net, adapters, call, "(Int8Linear)", "torch.int8")


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.uint8])
def test_an_fp8_or_byte_weight_refuses_a_merge_before_any_change(dtype: torch.dtype) -> None:
    layer = nn.Linear(8, 8)
    layer.weight = nn.Parameter(torch.zeros(8, 8).to(dtype), requires_grad=False)
    net, adapters = adapted(layer)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(LowdimError, match=rf"layer 0 \(Linear\) keeps its weight as {dtype}"):
        adapters.merge()
    assert all(torch.equal(weights[k].float(), v.float()) for k, v in net.state_dict().items())
    assert all(slot.merged_scale is None for slot in adapters.slots().values())


def test_an_embedding_with_max_norm_refuses_a_merge() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(20, 8, max_norm=1.0))
    net.requires_grad_(False)
    adapters = lowdim.inject(net, space(), lowdim.LayerSet("t", ("0",), types=("embedding",)), seed=1)
    with pytest.raises(LowdimError, match=r"layer 0 \(Embedding\) has max_norm=1\.0.*renormalises"):
        adapters.merge()
    assert adapters.slots()["0"].merged_scale is None


class DoubledLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # computes with 2·W, not W as stored
        return nn.functional.linear(x, 2 * self.weight, self.bias)


def test_a_subclass_with_its_own_forward_merges_with_a_warning_naming_it() -> None:
    torch.manual_seed(0)
    net, adapters = adapted(DoubledLinear(8, 8))
    with pytest.warns(UserWarning, match=r"layer 0 \(DoubledLinear\) overrides forward") as caught:
        adapters.merge()
    assert caught[0].filename == __file__
    assert adapters.slots()["0"].merged_scale is not None


def test_a_subclass_that_keeps_linear_forward_merges_without_a_warning() -> None:
    torch.manual_seed(0)
    net, adapters = adapted(nn.modules.linear.NonDynamicallyQuantizableLinear(8, 8))
    x = torch.randn(3, 8)
    with torch.no_grad():
        before = net(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            adapters.merge()
        torch.testing.assert_close(net(x), before, rtol=1e-5, atol=1e-6)
