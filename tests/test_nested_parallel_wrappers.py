"""A stack of data-parallel wrappers (review BS15) is looked through to the model at its bottom, as one wrapper is:
inject, the view, save and load see the model's own layer names, never ``module.``-prefixed ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim
from lowdim.injection.parallel import inner_model


def plain() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4)).requires_grad_(False)


def space() -> lowdim.Space:
    return lowdim.get_space("lora", rank=2, init="gaussian", init_std=0.3)


@pytest.mark.parametrize("depth", [2, 3])
def test_inject_through_nested_data_parallel_names_the_model_s_own_layers(tmp_path, depth):
    inner = plain()
    wrapper: nn.Module = inner
    for _ in range(depth):
        wrapper = nn.DataParallel(wrapper)
    assert inner_model(wrapper) is inner
    lowdim.inject(wrapper, space(), ["0", "2"], seed=1)  # the inner model's names, as with one wrapper
    adapters = lowdim.Adapters(wrapper)
    assert adapters.model is inner and sorted(adapters.slots("default")) == ["0", "2"]
    path = lowdim.save_adapter(tmp_path / "nested.safetensors", wrapper)
    alone = plain()
    lowdim.inject(alone, space(), ["0", "2"], seed=1)
    alone_path = lowdim.save_adapter(tmp_path / "alone.safetensors", alone)
    names = [layer.name for layer in lowdim.read_adapter(path).layers]
    assert names == [layer.name for layer in lowdim.read_adapter(alone_path).layers] == ["0", "2"]
    fresh = plain()
    lowdim.load_adapter(path, nn.DataParallel(nn.DataParallel(fresh)))
    x = torch.randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), inner(x), rtol=0, atol=0)
