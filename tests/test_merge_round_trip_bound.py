"""What docs/spaces.md promises of a merge and an unmerge (or remove_all) in fp32: each weight back within one ulp
of the larger of |W| and |W + ΔW|, since no copy of the weights is kept; and bit for bit where nothing was merged."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim


def adapted(seed: int, std: float):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(12, 10), nn.Conv2d(10, 6, 1))
    net.requires_grad_(False)
    weights = [net[0].weight.clone(), net[1].weight.clone()]
    space = lowdim.get_space("lora", rank=3, init="gaussian", init_std=std)
    return net, lowdim.inject(net, space, ["0", "1"], seed=seed), weights


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), std=st.sampled_from([1e-3, 0.3, 3.0]), scale=st.floats(-4, 4).filter(bool))
def test_merge_then_remove_all_restores_each_weight_within_an_ulp(seed, std, scale):
    net, adapters, before = adapted(seed, std)
    adapters.set_scale("default", scale)
    adapters.merge()
    merged = [net[0].base_layer.weight.clone(), net[1].base_layer.weight.clone()]
    adapters.remove_all()
    for original, peak, after in zip(before, merged, [net[0].weight, net[1].weight], strict=True):
        ulp = torch.finfo(torch.float32).eps * torch.maximum(original.abs(), peak.abs())
        assert ((after - original).abs() <= ulp + torch.finfo(torch.float32).tiny).all()


def test_remove_all_without_a_merge_is_bit_for_bit():
    net, adapters, _ = adapted(0, 0.3)
    state = {k.replace(".base_layer", ""): v.clone() for k, v in net.state_dict().items() if "slots" not in k
             and "lowdim_" not in k}
    adapters.remove_all()
    after = net.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())
    assert [type(m) for m in net] == [nn.Linear, nn.Conv2d]
