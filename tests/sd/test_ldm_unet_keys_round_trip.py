"""The LDM (single-file) UNet key table, drawn over block counts, layers per block and a mix of cross-attention
and plain blocks: every diffusers tensor gets its own LDM key, and diffusers' own single-file reader maps the
result back value for value. Every tensor is randomized, so two same-shaped tensors swapped would show."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lowdim_sd.ldm_checkpoint import UNET, _convert, _plain_state_dict, _unet_table


def random_unet(blocks: int, per_block: int, cross: list[bool], seed: int) -> UNet2DConditionModel:
    down = tuple("CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cross)
    up = tuple("CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(cross))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=per_block,
                                block_out_channels=tuple(8 * (i + 1) for i in range(blocks)), down_block_types=down,
                                up_block_types=up, cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4)
    with torch.no_grad():
        for param in unet.parameters():
            param.copy_(torch.randn_like(param))
    return unet


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.integers(1, 3), per_block=st.integers(1, 2), cross=st.lists(st.booleans(), min_size=3, max_size=3),
       seed=st.integers(0, 2**16))
def test_ldm_unet_keys_map_back_through_diffusers_reader_value_for_value(blocks, per_block, cross, seed):
    unet = random_unet(blocks, per_block, cross[:blocks], seed)
    ldm = _convert(_plain_state_dict(unet), _unet_table(unet.config), UNET)
    mine = unet.state_dict()
    assert len(ldm) == len(mine)  # no two tensors share an LDM key
    back = convert_ldm_unet_checkpoint(ldm, dict(unet.config))
    assert set(back) == set(mine)
    for key, value in mine.items():
        assert torch.equal(back[key].reshape(value.shape), value), key
