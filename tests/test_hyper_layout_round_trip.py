"""The hypernetwork's flat layout loses nothing: params -> state -> params is the identity, bit for bit, for
drawn layer shapes, spaces and groupings; and its weight loss is the batch mean of squared distances."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lowdim
from lowdim.hyper.layout import Grouping, param_layout, params_to_state, state_to_params
from lowdim.hyper.network import weight_loss
from lowdim.spaces.base import LayerSpec

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(shapes=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=6),
       space=st.sampled_from([("lidb", {"a": 3, "b": 2, "rank": 1}), ("lora", {"rank": 2})]),
       grouping_mode=st.sampled_from(["shape", "layer"]), batch=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_params_to_state_and_back_is_the_identity(shapes, space, grouping_mode, batch, seed):
    weight_space = lowdim.get_space(space[0], space[1])
    layers = [LayerSpec(f"l{i}", out, inp) for i, (out, inp) in enumerate(shapes)]
    grouping = Grouping.build([param_layout(weight_space, layer) for layer in layers], grouping_mode)
    generator = torch.Generator().manual_seed(seed)
    params = {layer.name: {key: torch.randn(batch, *shape, generator=generator)
                           for key, shape in weight_space.param_shapes(layer).items()} for layer in layers}
    back = state_to_params(grouping, layers, params_to_state(grouping, layers, params))
    assert list(back) == [layer.name for layer in layers]
    for name, tensors in params.items():
        assert back[name].keys() == tensors.keys()
        for key, value in tensors.items():
            assert torch.equal(back[name][key], value), (name, key)


@SETTINGS
@given(batch=st.integers(1, 4), sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=st.integers(0, 2**20))
def test_weight_loss_is_the_batch_mean_of_squared_distances(batch, sizes, seed):
    generator = torch.Generator().manual_seed(seed)

    def drawn():
        return {f"l{i}": {"x": torch.randn(batch, n, generator=generator, dtype=torch.float64)}
                for i, n in enumerate(sizes)}

    predicted, target = drawn(), drawn()
    want = sum(((predicted[k]["x"] - target[k]["x"]) ** 2).sum() for k in predicted) / batch
    torch.testing.assert_close(weight_loss(predicted, target), want)
