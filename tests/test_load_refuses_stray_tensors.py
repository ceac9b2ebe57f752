"""``Adapters.load_tensors`` / ``load_buffers`` take exactly the tensors each layer has (review FAI1): a tensor the
layer has none of, given under one of its real layers (a stranger's checkpoint, another lowdim's file), is refused
in one line naming the layer and the tensor, before anything is copied, not dropped without a word. Every lowdim
caller gives each layer exactly its space's tensors, so nothing it passes is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError


def _adapters(seed: int = 3) -> lowdim.Adapters:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
    return lowdim.inject(model, lowdim.get_space("lidb", a=2, b=2), ["0", "1"], seed=seed)


def _copies(per_layer: dict) -> dict:
    return {layer: {key: value.clone() for key, value in tensors.items()} for layer, tensors in per_layer.items()}


@pytest.mark.parametrize("stray", ["bogus", "A_train.old", ""])
def test_load_tensors_refuses_a_tensor_the_layer_has_none_of(stray):
    adapters = _adapters()
    before = _copies(adapters.tensors())
    given = {layer: {key: value + 1 for key, value in tensors.items()} for layer, tensors in before.items()}
    given["1"][stray] = torch.zeros(3)
    with pytest.raises(LowdimError) as refused:
        adapters.load_tensors("default", given)
    line = str(refused.value)
    assert "\n" not in line and "adapter 'default'" in line, line
    assert f"layer 1: unexpected tensor {stray!r}" in line, line
    assert "(the layer's params: " in line, line  # what it does take, so the reader sees the mismatch
    after = adapters.tensors()  # refused before the first copy: layer 0 (checked first) unchanged too
    assert all(torch.equal(before[layer][key], after[layer][key]) for layer in before for key in before[layer])


def test_load_buffers_refuses_a_tensor_the_layer_has_none_of():
    adapters, other = _adapters(0), _adapters(5)
    before = _copies(adapters.buffers())
    given = other.buffers()
    given["0"]["bogus"] = torch.zeros(1)
    with pytest.raises(LowdimError, match=r"^adapter 'default': buffers for layer 0: unexpected tensor 'bogus' "
                                          r"\(the layer's buffers: "):
        adapters.load_buffers("default", given)
    after = adapters.buffers()
    assert all(torch.equal(before[layer][key], after[layer][key]) for layer in before for key in before[layer])


def test_a_stray_name_is_printed_escaped():
    adapters = _adapters()
    given = adapters.tensors()
    given["0"]["evil\n\x1b[2J"] = torch.zeros(1)
    with pytest.raises(LowdimError) as refused:
        adapters.load_tensors("default", given)
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)
    assert r"'evil\n\x1b[2J'" in str(refused.value)


def test_exactly_the_layers_tensors_load():
    adapters, other = _adapters(), _adapters()
    with torch.no_grad():
        for param in other.parameters():
            param.add_(0.25)
    adapters.load_tensors("default", other.tensors())
    adapters.load_buffers("default", other.buffers())
    wanted, after = other.tensors(), adapters.tensors()
    assert all(torch.equal(wanted[layer][key], after[layer][key]) for layer in wanted for key in wanted[layer])
