"""``Adapters`` evaluated in a notebook cell (review AC4): each adapter's name, space, scale, merged state and layer
count, not an object address."""

from __future__ import annotations

import torch
from torch import nn

import lowdim


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))


def test_an_empty_view_says_so():
    assert repr(lowdim.Adapters(_model())) == "Adapters(none on Sequential)"


def test_each_adapter_is_a_line_with_its_space_scale_merge_and_layers():
    model = _model()
    view = lowdim.inject(model, lowdim.get_space("lora", {"rank": 2}), ["0", "2"], name="me")
    view.add("style", lowdim.get_space("lidb"), ["2"], scale=0.5)
    view.merge("style")
    assert repr(view) == ("Adapters(2 on Sequential:\n"
                          "  me: lora, scale 1, 2 layers\n"
                          "  style: lidb, scale 0.5, merged, 1 layer)")


def test_a_scale_set_per_layer_and_a_disabled_adapter_are_shown():
    model = _model()
    view = lowdim.inject(model, lowdim.get_space("lora", {"rank": 2}), ["0", "2"], name="me")
    view.set_scale("me", 0.25, layers="0")
    view.disable("me")
    assert repr(view) == "Adapters(1 on Sequential:\n  me: lora, scale 0.25-1, disabled, 2 layers)"
