"""A 1x1 Conv2d adapter on unbatched (C, H, W) input, which nn.Conv2d accepts: the update acts on the channel
dimension (-3), so one image alone gives what it gives in a batch, and bypass equals merged, whether or not its
height happens to equal its channel count."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.errors import LowdimError


def adapted_conv(channels: int, out: int, seed: int, batch: int | None = None):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(channels, out, 1))
    net.requires_grad_(False)
    space = lowdim.get_space("lora", rank=2, init="gaussian", init_std=0.3)
    return net, lowdim.inject(net, space, ["0"], seed=seed, batch=batch)


@settings(max_examples=30, deadline=None)
@given(channels=st.integers(1, 6), out=st.integers(1, 6), width=st.integers(1, 5),
       height_is_channels=st.booleans(), other_height=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_unbatched_equals_batched_and_bypass_equals_merged(channels, out, width, height_is_channels, other_height,
                                                           seed):
    height = channels if height_is_channels else other_height
    net, adapters = adapted_conv(channels, out, seed)
    image = torch.randn(channels, height, width, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        alone, batched = net(image), net(image[None])[0]
        adapters.merge()
        merged = net(image)
        adapters.unmerge()
    assert alone.shape == (out, height, width)
    torch.testing.assert_close(alone, batched, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone, merged, rtol=1e-5, atol=1e-5)


def test_per_sample_adapters_refuse_an_unbatched_image_in_one_line():
    net, _ = adapted_conv(4, 4, 0, batch=2)
    with pytest.raises(LowdimError, match=r"layer 0: per-sample adapters for 2 samples.*\(4, 4, 4\)"):
        net(torch.randn(4, 4, 4))
