"""The one alpha of a kohya export is the smallest layer rank, so each layer's ``up`` is only ever scaled up, by
rank / alpha >= 1, never down towards fp16's subnormals; what every reader draws (up @ down * alpha / rank) is the
adapter's own update, and A1111's ``ss_network_alpha`` says the same alpha (review Q, Q4).

A round trip alone cannot pin this: with alpha = the largest rank the update is as exact in fp32."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file
from test_export_per_layer_rank import WidthRank  # tests/sd: a space whose rank follows the layer's width
from test_plugins import plugin_module  # tests/
from torch import nn

import lowdim
from lowdim_sd.export import export_adapter, kohya_name, to_kohya

pytestmark = pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")


@st.composite
def per_layer_factors(draw) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One to five layers, each of its own rank (1 to 8) and size, with random (down, up)."""
    ranks = draw(st.lists(st.integers(1, 8), min_size=1, max_size=5))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    factors = {}
    for index, rank in enumerate(ranks):
        width_in, width_out = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        factors[f"unet.blocks.{index}.to_q"] = (torch.randn(rank, width_in, generator=generator),
                                                torch.randn(width_out, rank, generator=generator))
    return factors


@settings(max_examples=60, deadline=None)
@given(factors=per_layer_factors())
def test_the_alpha_is_the_smallest_rank_and_each_up_is_scaled_up_by_rank_over_alpha(factors):
    tensors = to_kohya(factors)
    smallest = min(down.shape[0] for down, _ in factors.values())
    for name, (down, up) in factors.items():
        key, rank = kohya_name(name), down.shape[0]
        alpha = float(tensors[f"{key}.alpha"])
        assert alpha == smallest
        scale = rank / alpha
        assert scale >= 1  # never towards fp16's subnormals
        written_up = tensors[f"{key}.lora_up.weight"]
        assert torch.equal(written_up, up if rank == alpha else up * scale)
        assert torch.equal(tensors[f"{key}.lora_down.weight"], down)
        # What a kohya reader applies: up @ down * alpha / rank, the adapter's own update.
        torch.testing.assert_close(written_up @ down * (alpha / rank), up @ down)


@settings(max_examples=20, deadline=None)
@given(rank=st.integers(1, 8), count=st.integers(1, 4))
def test_a_file_of_one_rank_keeps_alpha_equal_to_the_rank_and_up_as_it_is(rank, count):
    generator = torch.Generator().manual_seed(rank * 10 + count)
    factors = {f"unet.blocks.{index}.to_k": (torch.randn(rank, 4, generator=generator),
                                             torch.randn(3, rank, generator=generator)) for index in range(count)}
    tensors = to_kohya(factors)
    for name, (_, up) in factors.items():
        assert float(tensors[f"{kohya_name(name)}.alpha"]) == rank
        assert torch.equal(tensors[f"{kohya_name(name)}.lora_up.weight"], up)


def test_an_exported_file_of_mixed_ranks_states_the_smallest_as_its_alpha(tmp_path):
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin",
                                             plugin_module("width", register_spaces=lambda register:
                                                           register(WidthRank))])
    torch.manual_seed(0)
    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(8, 32), nn.Linear(32, 64), nn.Linear(64, 64))})
    with lowdim.use_registry(registry):
        adapters = lowdim.inject(model, lowdim.get_space("width-rank"), ["unet.0", "unet.1", "unet.2"], seed=0)
        with torch.no_grad():
            for param in adapters.parameters("default"):
                param.copy_(torch.randn_like(param))
        ranks = {name: slot.space.rank(slot.layer) for name, slot in adapters.slots("default").items()}
        source = lowdim.save_adapter(tmp_path / "me.safetensors", adapters)
        out = export_adapter(source, tmp_path / "me.kohya.safetensors", "kohya", dtype="fp32")
    assert sorted(set(ranks.values())) == [1, 4, 8]  # the point: ranks differ between layers
    alphas = {float(value) for key, value in load_file(out).items() if key.endswith(".alpha")}
    assert alphas == {1.0}
    with safe_open(str(out), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["ss_network_alpha"] == "1" and meta["ss_network_dim"] == "8"
