"""The hypernetwork's flat layout loses nothing: params -> state -> params is the identity, bit for bit, for
drawn layer shapes, spaces and groupings; each layer's token is read from and written back to that layer alone,
however the layers fall into shape groups; and its weight loss is the batch mean of squared distances."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import lowdim
from lowdim.hyper.layout import (
    Grouping,
    OutputHeads,
    TokenEmbedding,
    param_layout,
    params_to_state,
    state_to_params,
)
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


SHAPES = [(16, 8), (8, 16), (12, 12)]
MIXED = [SHAPES[0], SHAPES[1], SHAPES[1], SHAPES[0]]  # groups (l0, l3), (l1, l2): order [0, 3, 1, 2]


def lora_layers(shapes: list[tuple[int, int]]) -> tuple[lowdim.Space, list[LayerSpec], Grouping]:
    """LoRA layers of the given shapes, grouped by shape (same-shaped layers share one linear map)."""
    space = lowdim.get_space("lora", rank=2)
    layers = [LayerSpec(f"l{i}", *shape) for i, shape in enumerate(shapes)]
    return space, layers, Grouping.build([param_layout(space, layer) for layer in layers], "shape")


@given(shapes=st.lists(st.sampled_from(SHAPES), min_size=2, max_size=6))
@example(shapes=MIXED).via("group order [0, 3, 1, 2], not its own inverse")
@settings(max_examples=20, deadline=None)
def test_each_weight_token_reads_only_its_own_layers_estimate_whatever_the_shape_groups(shapes):
    space, layers, grouping = lora_layers(shapes)
    torch.manual_seed(0)
    embed = TokenEmbedding(grouping, 8)
    generator = torch.Generator().manual_seed(1)
    params = {layer.name: {k: torch.randn(1, *s, generator=generator) for k, s in space.param_shapes(layer).items()}
              for layer in layers}
    with torch.no_grad():
        tokens = embed(params_to_state(grouping, layers, params))
        for index, layer in enumerate(layers):
            changed = {**params, layer.name: {k: v + 1 for k, v in params[layer.name].items()}}
            moved = (embed(params_to_state(grouping, layers, changed)) - tokens).abs().amax(-1)[0] > 0
            assert moved.tolist() == [i == index for i in range(len(layers))], (layer.name, grouping.order)


@given(shapes=st.lists(st.sampled_from(SHAPES), min_size=2, max_size=6).filter(lambda shapes: len(set(shapes)) > 1))
@example(shapes=MIXED).via("group (l0, l3) is not the first two decoder tokens")
@settings(max_examples=20, deadline=None)
def test_each_layers_delta_comes_only_from_its_own_decoder_token_whatever_the_shape_groups(shapes):
    """The output side of the test above: a group's head must read its members' tokens, wherever they sit."""
    _, layers, grouping = lora_layers(shapes)
    torch.manual_seed(0)
    heads = OutputHeads(grouping, 8, init_scale=1.0)
    tokens = torch.randn(1, len(layers), 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        deltas = state_to_params(grouping, layers, heads(tokens))
        for index, layer in enumerate(layers):
            nudged = tokens.clone()
            nudged[:, index] += 1
            after = state_to_params(grouping, layers, heads(nudged))
            moved = [name for name, params in deltas.items()
                     if any(not torch.equal(value, after[name][key]) for key, value in params.items())]
            assert moved == [layer.name], (layer.name, grouping.members)


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
