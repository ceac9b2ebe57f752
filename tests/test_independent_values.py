"""Expected values written out by hand, not taken from the code under test.

Tests that compare two code paths agree when both share a mistake (a LoRA scale, a dtype table);
these pin what the paths must compute, found missing by mutation testing.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from torch import nn

import lowdim
from lowdim import functional as F
from lowdim.spaces.base import LayerSpec
from lowdim.spaces.stack import StackSpace


def test_basis_checksum_sees_a_small_change_of_the_bases_but_not_ulp_noise():
    zero = F.basis_checksum([torch.zeros(3, 2)])
    assert F.basis_checksum([torch.full((3, 2), 2.0**-18)]) != zero  # a real, if tiny, basis change
    assert F.basis_checksum([torch.full((3, 2), 2.0**-30)]) == zero  # another LAPACK's last bits


@settings(max_examples=30, deadline=None)
@given(rank=st.integers(1, 4), alpha=st.floats(0.25, 16.0), out=st.integers(1, 6), inp=st.integers(1, 6))
def test_lora_update_is_alpha_over_rank_times_up_down(rank, alpha, out, inp):
    space = lowdim.get_space("lora", rank=rank, alpha=alpha)
    generator = torch.Generator().manual_seed(rank * 100 + out * 10 + inp)
    params = {"down": torch.randn(rank, inp, generator=generator), "up": torch.randn(out, rank, generator=generator)}
    expected = (alpha / rank) * params["up"] @ params["down"]
    assert torch.allclose(space.delta(params, {}), expected, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(out=st.integers(2, 40), inp=st.integers(2, 40), seed=st.integers(0, 2**31))
def test_a_stacks_first_component_without_a_seed_keeps_the_bases_it_had_alone(out, inp, seed):
    layer = LayerSpec("q", out, inp)
    stack = StackSpace(components=[{"space": "lidb", "config": {}}, {"space": "lora", "config": {"rank": 2}}])
    alone = lowdim.get_space("lidb").make_buffers(layer, seed)
    stacked = stack.make_buffers(layer, seed)
    assert all(torch.equal(stacked[f"c0_{name}"], value) for name, value in alone.items())


def test_merging_the_frozen_part_of_a_trained_stack_folds_only_that_part():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6))
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4), ["0"], name="prediction")
    with torch.no_grad():
        for param in adapters.parameters("prediction"):
            param.copy_(torch.randn_like(param))
    predicted = adapters.delta("prediction", "0").detach().clone()  # what the frozen part adds to the weight
    lowdim.relax_rank(adapters, "prediction", "fast", lowdim.get_space("lora", rank=2), merge_frozen=False)
    with torch.no_grad():
        for param in adapters.parameters("fast"):  # a LoRA that has trained: its part is not zero
            param.copy_(torch.randn_like(param))
    x = torch.randn(3, 8)
    before, weight = model(x).detach(), model[0].base_layer.weight.detach().clone()
    adapters.merge("fast", part="frozen")
    torch.testing.assert_close(model[0].base_layer.weight.detach(), weight + predicted)  # the frozen part, folded
    slot = adapters.slots("fast")["0"]
    assert slot.frozen_merged_scale == 1.0 and slot.merged_scale is None  # the LoRA is not folded
    assert torch.allclose(model(x), before, atol=1e-5)  # the trainable part still runs live, once


def test_each_file_dtype_stores_that_dtype(tmp_path):
    expected = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    for name, dtype in expected.items():
        model = nn.Sequential(nn.Linear(8, 6))
        lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"])
        path = lowdim.save_adapter(tmp_path / f"{name}.safetensors", model, dtype=name)
        with safe_open(str(path), framework="pt") as handle:
            assert all(handle.get_tensor(key).dtype == dtype for key in handle.keys())  # noqa: SIM118
