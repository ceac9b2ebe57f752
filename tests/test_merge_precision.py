"""Merging into an fp16 or bf16 base weight adds ΔW computed in at least fp32 and rounded once
(lowdim/injection/layer.py, ``add_to_weight``): the merged weight carries only the rounding of ΔW and the
rounding of the sum, never the error of a half-precision product (which is many ulps where ΔW's terms cancel).

Both checks compare with W + scale·ΔW computed in float64. A bound of one ulp of that reference itself cannot
hold for any merge that adds a rounded ΔW (where W and ΔW cancel, the sum is far smaller than the rounding of
ΔW), so the bound is the one each rounding allows: half an ulp of ΔW plus half an ulp of the merged value.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim

HALF_DTYPES = st.sampled_from([torch.float16, torch.bfloat16])
# ±1 adds or subtracts ΔW as it is; any other scale multiplies first. The dyadic ones keep ΔW·scale exact.
SCALES = st.sampled_from([1.0, -1.0, 0.5, 0.375, -0.625, 1.5, -3.0])
FAST = settings(max_examples=30, deadline=None)


def half_ulp(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Half the spacing of ``dtype`` numbers at the top of the binade of each of ``values`` (float64): no
    less than any rounding to ``dtype`` moves a value near it, subnormals included."""
    info = torch.finfo(dtype)
    top = torch.exp2(torch.ceil(torch.log2(values.abs().clamp_min(info.tiny))))
    return (info.eps * top).clamp_min(info.tiny * info.eps) / 2


def merged_lora(dtype: torch.dtype, out_features: int, in_features: int, rank: int, seed: int, scale: float,
                factors: tuple[torch.Tensor, torch.Tensor], zero_base: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(base weight, merged weight, ΔW in float64 at scale 1) of a LoRA with the given factors."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(in_features, out_features)).to(dtype)
    if zero_base:
        with torch.no_grad():
            model[0].weight.zero_()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=rank), ["0"])
    with torch.no_grad():
        for param, value in zip(adapters.parameters(), factors, strict=True):  # down, then up
            param.copy_(value)
    down, up = adapters.lora_factors()["0"]  # at scale 1: ΔW = up @ down
    base = model[0].base_layer.weight.detach().clone()
    adapters.set_scale("default", scale)
    adapters.merge()
    return base, model[0].base_layer.weight.detach(), up.double() @ down.double()


@FAST
@given(dtype=HALF_DTYPES, scale=SCALES, out_features=st.integers(32, 96), in_features=st.integers(32, 96),
       rank=st.integers(4, 12), seed=st.integers(0, 2**31 - 1))
def test_a_half_precision_merge_adds_a_correctly_rounded_delta(dtype, scale, out_features, in_features, rank, seed):
    generator = torch.Generator().manual_seed(seed)
    down = torch.randn(rank, in_features, generator=generator) * 0.3
    up = torch.randn(out_features, rank, generator=generator) * 0.3
    base, merged, delta = merged_lora(dtype, out_features, in_features, rank, seed, scale, (down, up))
    scaled = scale * delta
    exact = base.double() + scaled
    # fp32's own product error: far below a half ulp, far below what an fp16/bf16 product would add.
    product = (rank + 2) * torch.finfo(torch.float32).eps * abs(scale) * (up.double().abs() @ down.double().abs())
    allowed = half_ulp(scaled, dtype) + half_ulp(merged.double(), dtype) + product
    error = (merged.double() - exact).abs()
    worst, within = int((error - allowed).argmax()), bool((error <= allowed).all())
    assert within, (
        f"element {divmod(worst, in_features)}: merged {merged.flatten()[worst].item()}, "
        f"W + scale·ΔW = {exact.flatten()[worst].item()}, allowed error {allowed.flatten()[worst].item():.3g}")


@FAST
@given(dtype=HALF_DTYPES, scale=SCALES, out_features=st.integers(8, 48), in_features=st.integers(8, 48),
       rank=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_a_delta_merged_into_a_zero_weight_is_the_delta_rounded_once(dtype, scale, out_features, in_features, rank,
                                                                      seed):
    # Factors on a grid of 1/32 keep the fp32 product (and ΔW·scale) exact, so the merged weight must be
    # exactly scale·ΔW rounded once to the weight's dtype: no rounding of ΔW before the scale.
    generator = torch.Generator().manual_seed(seed)
    down = torch.randint(-31, 32, (rank, in_features), generator=generator) / 32.0
    up = torch.randint(-31, 32, (out_features, rank), generator=generator) / 32.0
    _, merged, delta = merged_lora(dtype, out_features, in_features, rank, seed, scale, (down, up), zero_base=True)
    expected = (scale * delta).to(dtype)
    assert torch.equal(merged, expected), f"{int((merged != expected).sum())} elements differ"
