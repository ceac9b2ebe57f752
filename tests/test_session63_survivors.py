"""Behaviours of the spaces' math no test pinned, found by session 63's mutation audit (review FC): each test here
passes on the code and fails on the one-place change named above it. The seed and checksum values are pinned on
purpose: stored adapter files depend on them, and a file written and read by the same changed code would not
notice."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lowdim
from lowdim import functional as F
from lowdim.spaces.base import LayerSpec, Space, SpaceConfig
from lowdim.spaces.lidb import LidbConfig, LidbSpace
from lowdim.spaces.lora import LoraSpace


# --- R1: LoRA's update is (alpha / rank) · up @ down; alpha=None means a scale of 1 --------------------------
@settings(max_examples=30, deadline=None)
@given(rank=st.integers(1, 5), alpha=st.one_of(st.none(), st.floats(0.25, 16.0)), seed=st.integers(0, 2**16))
def test_lora_update_is_alpha_over_rank_times_up_down(rank, alpha, seed):
    layer = LayerSpec("l", 5, 6)
    space = LoraSpace(rank=rank, alpha=alpha, init="gaussian")
    params = space.init_params(layer, torch.Generator().manual_seed(seed))
    scale = 1.0 if alpha is None else alpha / rank
    torch.testing.assert_close(space.delta(params, {}), scale * params["up"] @ params["down"])


# --- L2: a clamp of b alone is said, as one of a is -----------------------------------------------------------
def test_lidb_notes_a_clamp_of_b_alone():
    space = LidbSpace(a=2, b=50, rank=1)
    assert space.describe(LayerSpec("l", 8, 6)) == "a=2, b=50 clamped to a=2, b=6 for l"


# --- L4: the random factors' default std is 1/sqrt(b) (the docs' "None means 1/sqrt(b)"), not 1/sqrt(rank) -----
def test_lidb_default_init_std_is_one_over_sqrt_b():
    space = LidbSpace(a=256, b=256, rank=1, init="gaussian")
    params = space.init_params(LayerSpec("l", 256, 256), torch.Generator().manual_seed(0))
    for name in ("A_train", "B_train"):
        assert 0.8 / 16 < float(params[name].std()) < 1.2 / 16, name


# --- B5: a config object handed to a space is validated like options are ------------------------------------
def test_a_space_built_from_an_invalid_config_object_is_refused():
    with pytest.raises(lowdim.ConfigError, match=r"^lidb: a must be an integer >= 1, got 0$"):
        LidbSpace(LidbConfig(a=0))


# --- B6: a plugin space that does not define rank gets the width of its factors (down's rows) ------------------
def test_the_default_rank_is_the_factors_width():
    class TwoWide(Space[SpaceConfig]):
        name = "twowide-fc"
        config_class = SpaceConfig

        def param_shapes(self, layer):
            return {"d": (2, layer.in_features), "u": (layer.out_features, 2)}

        def init_params(self, layer, generator):
            return {k: torch.zeros(s) for k, s in self.param_shapes(layer).items()}

        def factors(self, params, buffers):
            return params["d"], params["u"]

    assert TwoWide().rank(LayerSpec("l", 5, 7)) == 2


# --- F4/F6: a layer's seed and a basis checksum are stored in files: their values never change ----------------
def test_layer_seeds_and_basis_checksums_keep_their_values():
    assert F.layer_seed(0, "down.0") == 28669270877850363
    assert F.layer_seed(7, "mid.attn") == 8522884040602578509
    t = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert F.basis_checksum([t]) == "641d890dbc297cce"


# --- F5: the checksum tells bases of another shape apart even with the same values ----------------------------
def test_a_basis_checksum_depends_on_the_shape():
    t = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert F.basis_checksum([t]) != F.basis_checksum([t.reshape(4, 3)])


# --- B7: num_params counts what trains: a stack's frozen components are not the user's trainable count ----------
def test_num_params_counts_only_what_trains():
    space = lowdim.get_space("stack", components=[{"space": "lidb", "config": {"a": 4, "b": 4}},
                                                  {"space": "lora", "config": {"rank": 2}}])
    assert space.num_params(LayerSpec("l", 6, 5)) == 2 * (6 + 5)


# --- F8: under a torch.func transform (the out-of-place add) the update keeps its scale -------------------------
@settings(max_examples=30, deadline=None)
@given(scale=st.floats(-4.0, 4.0).filter(lambda value: abs(value - 1.0) > 1e-3), seed=st.integers(0, 2**16))
def test_the_update_under_vmap_keeps_its_scale(scale, seed):
    g = torch.Generator().manual_seed(seed)
    x, down = torch.randn(3, 2, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    up = torch.randn(3, 5, 2, generator=g)

    def one(x, d, u):
        return F.lowrank_add_(torch.zeros(x.shape[0], 5), x, d, u, scale=scale)

    out = torch.func.vmap(one)(x, down, up)
    torch.testing.assert_close(out, scale * x @ (up @ down).transpose(-1, -2))


# --- C1: a space name with capitals is refused as it registers (--space and files carry names lower-case) -------
def test_a_space_name_with_capitals_is_refused():
    from lowdim.errors import LowdimError
    from lowdim.spaces.checks import refuse_a_broken_space_class

    class Upper(LoraSpace):
        name = "MyLora"

    with pytest.raises(LowdimError, match=r"name 'MyLora' must be lower-case letters"):
        refuse_a_broken_space_class(Upper)


# --- I3: 75 token vectors (77 CLIP positions less BOS and EOS) are accepted; 76 are refused ---------------------
def test_ti_takes_up_to_75_vectors():
    from lowdim.spaces.ti import TextualInversionSpace

    assert TextualInversionSpace(vectors=75).config.vectors == 75
    with pytest.raises(lowdim.ConfigError, match=r"^ti: vectors must be an integer from 1 to 75, got 76$"):
        TextualInversionSpace(vectors=76)


# --- C4: a default init whose update is small but not zero still changes the model: warned about --------------
def test_a_default_init_with_a_small_nonzero_update_is_warned_about():
    from lowdim.plugins import PluginWarning
    from lowdim.spaces.checks import warn_if_init_is_not_zero

    class Tiny(LoraSpace):
        name = "tiny-fc"

        def init_params(self, layer, generator):
            params = super().init_params(layer, generator)
            params["up"] = torch.full_like(params["up"], 1e-3)
            return params

    with pytest.warns(PluginWarning, match="its default init gives ΔW ≠ 0"):
        warn_if_init_is_not_zero(Tiny)
