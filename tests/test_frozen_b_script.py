"""benchmarks/frozen_b_targets.py: the Gram of rank-1 ΔW and the ridge measured through it (ladder rung 19)."""

from __future__ import annotations

import pytest
import script_loader
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowdim.spaces.base import LayerSpec
from lowdim.spaces.lidb import LidbConfig, LidbSpace


def load_script():
    return script_loader.load_script("benchmarks/frozen_b_targets.py")


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_the_gram_is_the_inner_product_of_the_delta_weights(count, seed):
    script = load_script()
    space = LidbSpace(LidbConfig(a=5, b=4))
    layers = [LayerSpec(f"l{i}", 7 + i, 6) for i in range(2)]
    generator = torch.Generator().manual_seed(seed)
    params = {layer.name: {"A_train": torch.randn(count, 5, 1, generator=generator),
                           "B_train": torch.randn(count, 1, 4, generator=generator)} for layer in layers}
    got = script.gram(space, layers, lambda name: params[name], count)
    from lowdim import functional as F

    deltas = []
    for i in range(count):
        flat = []
        for layer in layers:
            buffers = space.make_buffers(layer, F.layer_seed(0, layer.name))
            down, up = space.factors({k: v[i] for k, v in params[layer.name].items()}, buffers)
            flat.append((up @ down).double().flatten())
        deltas.append(torch.cat(flat))
    deltas = torch.stack(deltas)
    assert torch.allclose(got, deltas @ deltas.T, rtol=1e-5, atol=1e-6)


def test_targets_linear_in_the_features_are_predicted_and_unrelated_ones_are_not():
    script = load_script()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=generator, dtype=torch.float64)
    linear = x @ torch.randn(5, 30, generator=generator, dtype=torch.float64)
    noise = torch.randn(200, 30, generator=generator, dtype=torch.float64)
    assert script.held_out(x, linear @ linear.T, 160) < 0.01
    assert script.held_out(x, noise @ noise.T, 160) == pytest.approx(1.0, abs=0.15)
