"""Edges of the merge and override guards (review BS13, BS14): an adapter whose frozen part is folded into the
weights cannot be rescaled, enabled or disabled (the folded part would stay at its old scale while the live part
moved), and an override tensor takes at most one leading batch dimension."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import LowdimError


def relaxed_stack_with_frozen_part_merged() -> tuple[nn.Module, lowdim.Adapters]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6))
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4), ["0"], name="prediction")
    with torch.no_grad():
        for param in adapters.parameters("prediction"):
            param.copy_(torch.randn_like(param))
    lowdim.relax_rank(adapters, "prediction", "fast", lowdim.get_space("lora", rank=2), merge_frozen=False)
    with torch.no_grad():
        for param in adapters.parameters("fast"):
            param.copy_(torch.randn_like(param))
    adapters.merge("fast", part="frozen")
    return model, adapters


@pytest.mark.parametrize("change", [
    lambda adapters: adapters.set_scale("fast", 2.0),
    lambda adapters: adapters.set_scale("fast", 0.5, layers="0"),
    lambda adapters: adapters.disable("fast"),
    lambda adapters: adapters.enable("fast"),
    lambda adapters: adapters.disabled("fast").__enter__(),
], ids=["set_scale", "set_scale_of_a_layer", "disable", "enable", "disabled_block"])
def test_an_adapter_whose_frozen_part_is_merged_refuses_a_change_and_computes_as_before(change):
    model, adapters = relaxed_stack_with_frozen_part_merged()
    x = torch.randn(3, 8)
    before = model(x).detach()
    with pytest.raises(LowdimError, match=r"^adapter 'fast' is merged \(in part, for a relaxed stack\); unmerge it "):
        change(adapters)
    slot = adapters.slots("fast")["0"]
    assert slot.scale == 1.0 and slot.enabled
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


def test_after_unmerging_the_frozen_part_the_scale_changes_the_whole_adapter():
    model, adapters = relaxed_stack_with_frozen_part_merged()
    x = torch.randn(3, 8)
    adapters.unmerge("fast")
    base = model[0].base_layer(x)
    at_one = model(x) - base
    adapters.set_scale("fast", 2.0)
    torch.testing.assert_close(model(x) - base, 2 * at_one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("leading", [(2, 3), (1, 1), (3, 1)])
def test_an_override_with_two_leading_batch_dimensions_is_refused(leading):
    model = nn.Sequential(nn.Linear(8, 6))
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    good = {layer: {k: v.detach().clone() for k, v in p.items()} for layer, p in adapters.tensors("default").items()}
    deeper = {"0": {**good["0"], "up": torch.zeros(*leading, 6, 2)}}
    said = (r"^override of adapter 'default': 0\.up must have shape \(6, 2\) \(optionally with a leading batch "
            r"dimension\), got \(" + ", ".join(map(str, leading)) + r", 6, 2\)$")
    with pytest.raises(LowdimError, match=said), adapters.override("default", deeper):
        pytest.fail("the override ran")


def test_an_override_with_one_leading_batch_dimension_runs_per_sample():
    model = nn.Sequential(nn.Linear(8, 6))
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
    good = {layer: {k: v.detach().clone() for k, v in p.items()} for layer, p in adapters.tensors("default").items()}
    batched = {"0": {name: value.expand(3, *value.shape).clone() for name, value in good["0"].items()}}
    batched["0"]["up"][1] = torch.randn(6, 2)
    x = torch.randn(3, 8)
    with adapters.override("default", batched):
        out = model(x)
    with adapters.override("default", {"0": {name: value[1] for name, value in batched["0"].items()}}):
        torch.testing.assert_close(out[1], model(x[1:2])[0])
