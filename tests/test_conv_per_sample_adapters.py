"""Per-sample adapters on 1x1 convolutions (the layer's conv path, channels on dim 1): a batch of B adapters on
tiled inputs equals running each sample alone with its adapter j % B; merging equals the bypass; unmerging puts
the convolution back. For lora, lidb and a stack of both, at scales 1, -0.5 and 2."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim

SPACE_OPTIONS = {
    "lidb": {"a": 3, "b": 3, "rank": 1},
    "lora": {"rank": 2},
    "stack": {"components": [{"space": "lidb", "config": {"a": 2, "b": 2}}, {"space": "lora", "config": {"rank": 1}}]},
}


def two_convolutions(cin: int, cout: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.Tanh(), nn.Conv2d(cout, cin, 1)).double()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 6), cout=st.integers(1, 6), batch=st.integers(1, 3), tiles=st.integers(1, 2),
       hw=st.tuples(st.integers(1, 3), st.integers(1, 3)), space=st.sampled_from(sorted(SPACE_OPTIONS)),
       seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1.0, -0.5, 2.0]))
def test_per_sample_conv_adapters_equal_a_loop_and_merged_equals_bypass(cin, cout, batch, tiles, hw, space, seed,
                                                                       scale):
    model = two_convolutions(cin, cout)
    adapters = lowdim.inject(model, lowdim.get_space(space, SPACE_OPTIONS[space]), ["0", "2"], seed=seed,
                             scale=scale)
    model.double()  # adapter parameters are made in fp32 whatever the model's dtype: cast them after injecting
    generator = torch.Generator().manual_seed(seed)
    per_sample = {layer: {key: torch.randn(batch, *shape, generator=generator, dtype=torch.float64)
                          for key, shape in slot.space.param_shapes(slot.layer).items()}
                  for layer, slot in adapters.slots("default").items()}
    x = torch.randn(tiles * batch, cin, *hw, generator=generator, dtype=torch.float64)
    with adapters.override("default", per_sample):
        batched = model(x)
    looped = []
    for j in range(len(x)):
        adapters.load_tensors("default", {layer: {key: value[j % batch] for key, value in tensors.items()}
                                          for layer, tensors in per_sample.items()})
        looped.append(model(x[j:j + 1])[0])
    torch.testing.assert_close(batched, torch.stack(looped))

    bypass = model(x[-1:])  # the last sample's adapter is the one loaded
    adapters.merge("default")
    with torch.no_grad():  # evaluated, as a merged model is: with grad on lowdim warns "unmerge it before training"
        torch.testing.assert_close(model(x[-1:]), bypass)
    adapters.unmerge("default")
    restored = model.state_dict()
    for key, value in two_convolutions(cin, cout).state_dict().items():
        index, kind = key.split(".")
        torch.testing.assert_close(restored[f"{index}.base_layer.{kind}"], value)
