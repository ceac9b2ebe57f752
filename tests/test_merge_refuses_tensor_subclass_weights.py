"""A quantized weight held as a tensor subclass (torchao's AffineQuantizedTensor, optimum-quanto's QTensor) reports
a float dtype while its storage is int: a merge's in-place add would land in a dequantized copy (lost) or fail deep
inside. The merge is refused in one line naming the layer and the weight's type, before any weight changes; adding
the adapter (unmerged use, which only calls the layer) stays allowed and computes W + ΔW."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_map

import lowdim
from lowdim.errors import LowdimError


class Int8Weight(torch.Tensor):
    """A minimal stand-in for those libraries' weights: int8 data and a per-row scale, reporting float32; every op
    but detach runs on the dequantized values (so an in-place add goes into a temporary, as in the real ones)."""

    @staticmethod
    def __new__(cls, data: torch.Tensor, scale: torch.Tensor) -> Int8Weight:
        return torch.Tensor._make_wrapper_subclass(cls, data.shape, dtype=torch.float32, device=data.device)

    def __init__(self, data: torch.Tensor, scale: torch.Tensor) -> None:
        self.int_data, self.row_scale = data, scale

    @classmethod
    def quantize(cls, weight: torch.Tensor) -> Int8Weight:
        scale = weight.abs().amax(dim=1, keepdim=True) / 127
        return cls(torch.round(weight / scale).to(torch.int8), scale)

    def dequantize(self) -> torch.Tensor:
        return self.int_data.float() * self.row_scale

    def __repr__(self) -> str:
        return f"Int8Weight({self.dequantize()})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.detach.default:  # nn.Parameter needs detach to keep the type
            return cls(args[0].int_data, args[0].row_scale)
        plain = lambda value: value.dequantize() if isinstance(value, Int8Weight) else value  # noqa: E731
        return func(*tree_map(plain, args), **tree_map(plain, kwargs or {}))


def quantized_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).eval().requires_grad_(False)
    net[0].weight = nn.Parameter(Int8Weight.quantize(net[0].weight.detach()), requires_grad=False)
    return net


def lora() -> lowdim.Space:
    return lowdim.get_space("lora", rank=2, init="gaussian", init_std=0.3)


@pytest.mark.parametrize("call", ["merge", "merge_and_unload"])
def test_a_merge_into_a_quantized_tensor_subclass_is_refused_naming_the_layer_and_type(call: str) -> None:
    net = quantized_net()
    adapters = lowdim.inject(net, lora(), ["0", "2"], seed=1)
    x = torch.randn(3, 8)
    with torch.no_grad():
        before = net(x)
    with pytest.raises(LowdimError) as caught:
        getattr(adapters, call)()
    message = str(caught.value)
    assert "\n" not in message, message
    for words in ("layer 0 (Linear)", "Int8Weight", "float32", "merge before quantizing",
                  "keep adapter 'default' unmerged"):
        assert words in message, message
    assert adapters.names() == ["default"]
    assert all(slot.merged_scale is None for slot in adapters.slots().values())
    with torch.no_grad():
        torch.testing.assert_close(net(x), before, rtol=0, atol=0)


def test_an_adapter_on_a_quantized_tensor_subclass_works_unmerged() -> None:
    net = quantized_net()
    reference = quantized_net()
    reference[0].weight = nn.Parameter(reference[0].weight.dequantize(), requires_grad=False)  # the same values
    x = torch.randn(3, 8)
    adapters = lowdim.inject(net, lora(), ["0", "2"], seed=1)
    lowdim.inject(reference, lora(), ["0", "2"], seed=1).merge()  # plain weights: W + ΔW written in
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=1e-5, atol=1e-6)
    assert adapters.names() == ["default"]


def test_a_plain_parameter_beside_it_still_merges() -> None:
    net = quantized_net()
    adapters = lowdim.inject(net, lora(), ["2"], seed=1)
    x = torch.randn(3, 8)
    with torch.no_grad():
        unmerged = net(x)
        adapters.merge()
        torch.testing.assert_close(net(x), unmerged, rtol=1e-5, atol=1e-6)
