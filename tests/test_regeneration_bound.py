"""What ``check_regeneration`` charges a file for its bases: a bound on what ``make_buffers`` makes, summed over a
stack's parts, so a rank-relaxed personalization of SD1.5 (LiDB frozen beside a LoRA) is not refused as too big."""

from __future__ import annotations

from pathlib import Path

import hypothesis.strategies as st
from hypothesis import given, settings

import lowdim
from lowdim import filecheck
from lowdim.spaces.base import LayerSpec
from lowdim.spaces.stack import StackSpace


def sd15_attention_layers() -> list[LayerSpec]:
    """SD1.5's UNet self- and cross-attention and its CLIP text encoder's attention, by shape (184 layers)."""
    layers = []
    for width, blocks in ((320, 5), (640, 5), (1280, 7)):
        for block in range(blocks):
            name = f"unet.{width}.{block}"
            layers += [LayerSpec(f"{name}.attn1.{p}", width, width) for p in ("to_q", "to_k", "to_v", "to_out")]
            layers += [LayerSpec(f"{name}.attn2.{p}", width, width) for p in ("to_q", "to_out")]
            layers += [LayerSpec(f"{name}.attn2.{p}", width, 768) for p in ("to_k", "to_v")]
    return layers + [LayerSpec(f"te.{i}.{p}", 768, 768) for i in range(12) for p in ("q", "k", "v", "out")]


def made(space, layer: LayerSpec) -> int:
    return sum(tensor.numel() for tensor in space.make_buffers(layer, 0).values())


def test_a_rank_relaxed_sd15_personalization_is_within_the_bound():
    relaxed = StackSpace.of([(lowdim.get_space("lidb"), None)], lowdim.get_space("lora", rank=4))
    filecheck.check_regeneration(relaxed, sd15_attention_layers(), Path("me.safetensors"))  # raised: 2.2e9 > 2^29


def test_a_lora_is_charged_nothing_and_a_stack_the_sum_of_its_parts():
    layer = LayerSpec("unet.0", 1280, 768)
    lidb, lora = lowdim.get_space("lidb"), lowdim.get_space("lora", rank=8)
    assert filecheck.regeneration_cost(lora, layer) == 0
    stack = StackSpace.of([(lidb, None)], lora)
    assert filecheck.regeneration_cost(stack, layer) == filecheck.regeneration_cost(lidb, layer) > 0


@settings(max_examples=25, deadline=None)
@given(out=st.integers(1, 96), inp=st.integers(1, 96), a=st.integers(1, 12), b=st.integers(1, 12),
       rank=st.integers(1, 6), lidb_parts=st.integers(1, 3))
def test_the_charge_bounds_the_bases_made(out, inp, a, b, rank, lidb_parts):
    layer = LayerSpec("unet.0", out, inp)
    lidb = lowdim.get_space("lidb", a=a, b=b)
    stack = StackSpace.of([(lidb, None)] * lidb_parts, lowdim.get_space("lora", rank=rank))
    for space in (lidb, stack):
        assert made(space, layer) <= filecheck.regeneration_cost(space, layer)
