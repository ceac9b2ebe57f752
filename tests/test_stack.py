"""Rank-relaxed stacks (paper §4.3): sum, rank, exact export and merging the frozen part."""

from __future__ import annotations

import random
import types

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim import functional as F
from lowdim.hookspecs import hookimpl
from lowdim.spaces import LayerSpec, LoraSpace, StackSpace

FAST = settings(max_examples=25, deadline=None)


@FAST
@given(out_features=st.integers(2, 20), in_features=st.integers(2, 20), seed=st.integers(0, 2**31),
       draw=st.integers(0, 2**31))
def test_stack_delta_is_the_sum_of_components_and_rank_at_most_the_sum(out_features, in_features, seed, draw):
    layer = LayerSpec("blk.q", out_features, in_features)
    stack = StackSpace(StackSpace.sample_config(random.Random(draw), layer))
    generator = torch.Generator().manual_seed(seed)
    params = {k: torch.randn(v.shape, generator=generator, dtype=torch.float64)
              for k, v in stack.init_params(layer, generator).items()}
    buffers = {k: v for k, v in stack.make_buffers(layer, seed).items()}
    parts = [
        space.delta(stack._take(params, i), stack._take(buffers, i)) for i, space in enumerate(stack.components)
    ]
    assert torch.allclose(stack.delta(params, buffers), sum(parts), atol=1e-9)
    down, up = stack.factors(params, buffers)
    assert down.shape[0] == sum(space.rank(layer) for space in stack.components)
    assert torch.allclose(up @ down, sum(parts), atol=1e-9)
    assert F.numerical_rank(stack.delta(params, buffers)) <= stack.rank(layer)
    frozen, trainable = stack.split_factors(params, buffers)
    alone = stack.trainable_factors(params, buffers)  # what a merged stack's forward computes
    assert all(torch.equal(a, b) for a, b in zip(alone, trainable, strict=True))
    rebuilt = F.lowrank_delta(*alone) + (F.lowrank_delta(*frozen) if frozen is not None else 0)
    assert torch.allclose(rebuilt, sum(parts), atol=1e-9)


def test_only_the_trainable_component_trains():
    layer = LayerSpec("q", 30, 20)
    stack = StackSpace(components=[{"space": "lidb", "config": {}}, {"space": "lora", "config": {"rank": 4}}])
    assert stack.trainable_names(layer) == ["c1_down", "c1_up"]
    assert stack.num_params(layer) == 4 * (30 + 20)


def _trained_lidb(seed: int = 5) -> tuple[nn.Module, lowdim.Adapters, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 16))
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=12, b=10), ["0", "2"], seed=seed, name="hyper")
    with torch.no_grad():
        for param in adapters.parameters("hyper"):
            param.copy_(torch.randn_like(param))
    x = torch.randn(6, 24)
    return model, adapters, x, model(x).detach()


def test_relax_rank_keeps_the_prediction_and_exports_an_exact_rank_r_plus_1_lora():
    for merge_frozen in (False, True):
        model, adapters, x, predicted = _trained_lidb()
        old_factors = adapters.lora_factors("hyper")
        lowdim.relax_rank(adapters, "hyper", "fast", lowdim.get_space("lora", rank=4), merge_frozen=merge_frozen)
        assert torch.allclose(model(x), predicted, atol=1e-5)
        trainable = adapters.parameters("fast")
        assert {tuple(p.shape) for p in trainable} == {(4, 24), (40, 4), (4, 40), (16, 4)}
        with torch.no_grad():
            for param in trainable:
                param.add_(torch.randn_like(param) * 0.1)
        factors = adapters.lora_factors("fast")
        for layer, (down, up) in factors.items():
            assert down.shape[0] == F.numerical_rank(up @ down) == 1 + 4
            # The frozen part of the export is exactly the predicted LiDB update.
            assert torch.allclose(up[:, :1] @ down[:1], old_factors[layer][1] @ old_factors[layer][0], atol=1e-6)
            delta = adapters.delta("fast", layer)
            assert torch.allclose(up @ down, delta, atol=1e-6)


def test_merged_frozen_part_changes_base_weights_but_not_outputs_and_unmerges():
    model, adapters, x, predicted = _trained_lidb()
    base = model[0].base_layer.weight.detach().clone()
    lowdim.relax_rank(adapters, "hyper", "fast", lowdim.get_space("lora", rank=2), merge_frozen=True)
    assert not torch.allclose(model[0].base_layer.weight, base)
    assert torch.allclose(model(x), predicted, atol=1e-5)
    adapters.remove_all()
    assert torch.allclose(model[0].weight, base, atol=1e-6)


def test_merge_frozen_is_what_relax_rank_acts_on_and_a_file_records_it_but_loading_never_merges(tmp_path):
    for merge_frozen in (False, True):
        model, adapters, x, predicted = _trained_lidb()
        base = model[0].base_layer.weight.detach().clone()
        info = lowdim.relax_rank(adapters, "hyper", "fast", lowdim.get_space("lora", rank=2), merge_frozen=merge_frozen)
        assert info.space.config.merge_frozen is merge_frozen
        assert torch.equal(model[0].base_layer.weight, base) is not merge_frozen
        path = lowdim.save_adapter(tmp_path / f"{merge_frozen}.safetensors", model, name="fast")
        assert lowdim.read_adapter(path).space.config.merge_frozen is merge_frozen
        fresh, _, _, _ = _trained_lidb()
        lowdim.Adapters(fresh).remove_all()
        lowdim.load_adapter(path, fresh)
        assert torch.equal(fresh[0].base_layer.weight, base)  # the output is the same either way
        assert torch.allclose(fresh(x), predicted, atol=1e-5)


class WideLora(LoraSpace):
    name = "widelora"


def test_a_stack_builds_its_components_from_the_registry_that_builds_it():
    plugin = types.ModuleType("wide")
    plugin.register_spaces = hookimpl(lambda register: register(WideLora))
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", plugin])
    components = [{"space": "widelora", "config": {"rank": 2}}, {"space": "lora", "config": {}}]
    stack = registry.make_space("stack", {"components": components})  # no use_registry: not the process-wide one
    assert [type(space) for space in stack.components] == [WideLora, LoraSpace]
    assert "widelora" not in lowdim.get_registry().spaces
    # Already-built spaces are used as they are, whichever registry (if any) made them.
    built = StackSpace.of([(WideLora(rank=3), 7)], LoraSpace(rank=2))
    assert [type(space) for space in built.components] == [WideLora, LoraSpace]
    assert built.rank(LayerSpec("q", 8, 6)) == 5


def _injected(space: lowdim.spaces.Space, seed: int) -> lowdim.Adapters:
    torch.manual_seed(0)
    return lowdim.inject(nn.Sequential(nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 8)), space, ["0", "2"], seed=seed)


def test_component_0_and_a_seeded_component_keep_the_bases_of_the_standalone_adapters():
    # docs/spaces.md: an adapter frozen into a stack computes what it computed alone.
    lidb = lowdim.get_space("lidb", a=6, b=5)
    stack = StackSpace.of([(lidb, None), (lidb, 23)], lowdim.get_space("lora", rank=2))
    stacked, alone, seeded = (_injected(space, seed).buffers() for space, seed in ((stack, 11), (lidb, 11), (lidb, 23)))
    for layer in ("0", "2"):
        for key in ("A_aux", "B_aux"):
            assert torch.equal(stacked[layer][f"c0_{key}"], alone[layer][key]), (layer, key)
            assert torch.equal(stacked[layer][f"c1_{key}"], seeded[layer][key]), (layer, key)


def test_components_without_a_seed_get_bases_of_their_own_and_the_seeding_is_pinned():
    lidb = lowdim.get_space("lidb", a=6, b=5)
    stack = StackSpace.of([(lidb, None), (lidb, None)], lowdim.get_space("lora", rank=2))
    adapters = _injected(stack, seed=11)
    for layer, buffers in adapters.buffers().items():  # the same bases twice would add no new directions
        assert not torch.equal(buffers["c0_A_aux"], buffers["c1_A_aux"]), layer
        assert not torch.equal(buffers["c0_B_aux"], buffers["c1_B_aux"]), layer
    # A stack file keeps only seeds: a change here is a format change, and every saved stack stops loading.
    assert lowdim.files._checksum(adapters.buffers(), adapters.info().layers) == PINNED_STACK_CHECKSUM


PINNED_STACK_CHECKSUM = "b5cf39a86df56640"


class UnstackableLora(LoraSpace):
    """A component whose factors take one layer's tensors only, as a plugin space may declare."""

    name = "unstackablelora"

    def stacks_layers(self) -> bool:
        return False


def test_a_stack_with_a_component_that_cannot_take_stacked_layers_is_never_stacked():
    stack = StackSpace.of([(UnstackableLora(rank=2), None)], LoraSpace(rank=2))
    assert not stack.stacks_layers()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6))
    lowdim.inject(model, stack, ["0", "2"], seed=3)
    with lowdim.stacked_factors(model) as stacked:
        assert stacked == 0  # the two same-shape layers would otherwise share one batched product


def test_describe_names_every_component_whose_rank_exceeds_the_layer():
    layer = LayerSpec("q", 4, 3)
    stack = StackSpace.of([(LoraSpace(rank=5), None)], LoraSpace(rank=6))
    note = stack.describe(layer)
    assert note is not None and "rank=5" in note and "rank=6" in note


def test_a_trainable_index_past_the_last_component_is_refused_not_wrapped_around():
    components = [{"space": "lora", "config": {}}, {"space": "lora", "config": {"rank": 2}}]
    for index in (2, -3):
        try:
            StackSpace(components=components, trainable=index)
        except lowdim.ConfigError as error:
            assert f"trainable index {index} is out of range for 2 components" in str(error)
        else:
            raise AssertionError(f"trainable={index} was accepted")
