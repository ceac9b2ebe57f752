"""A training forward inside ``stacked_factors`` makes the factors of same-shape layers in one batched product.

What users rely on: the output and every gradient are the ones the layers give on their own, whatever the
space (rank-relaxed stacks included), and a step launches fewer operations, which is the point on a GPU.
The frozen bases a group shares are stacked once, and the stack must follow any change to them.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from dispatch_ops import Operations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim import stacked_factors  # the name the README gives

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    REGISTRY = lowdim.Registry.from_plugins(load_entry_points=True)
PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True, scope="module")
def _registry():
    with lowdim.use_registry(REGISTRY):
        yield


def adapted(space: lowdim.Space, width: int, same: int, dtype=torch.float64, seed: int = 0):
    """``same`` (width x width) layers and one (width + 1, width) layer, all adapted, with random non-zero
    params; in fp64 the adapters are too, in half precision they stay fp32, as training keeps them."""
    torch.manual_seed(seed)
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(same)], nn.Linear(width, width + 1))
    model.requires_grad_(False).to(dtype)
    adapters = lowdim.Adapters(model)
    adapters.add("a", space, [str(i) for i in range(same + 1)], seed=seed)
    if dtype == torch.float64:
        model.to(dtype)
    with torch.no_grad():
        for param in adapters.parameters("a"):
            param.copy_(torch.randn_like(param))
    return model, adapters


def output_and_grads(model: nn.Module, adapters: lowdim.Adapters, x: torch.Tensor, stacked: bool):
    for param in adapters.parameters("a"):
        param.grad = None
    if stacked:
        with stacked_factors(model) as count:
            output = model(x)
    else:
        output, count = model(x), 0
    output.float().square().sum().backward()
    return output.detach(), [param.grad.clone() for param in adapters.parameters("a")], count


SPACES = {
    "lora": lambda rng: lowdim.get_space("lora", rank=rng.randint(1, 3), alpha=rng.choice([None, 3.0])),
    "lidb": lambda rng: lowdim.get_space("lidb", a=rng.randint(1, 6), b=rng.randint(1, 6)),
}


@pytest.mark.parametrize("space_name", sorted(SPACES))
@PROPERTY
@given(seed=st.integers(0, 2**16), width=st.integers(2, 9), same=st.integers(2, 4))
def test_output_and_gradients_are_the_layers_own(space_name, seed, width, same):
    space = SPACES[space_name](random.Random(seed))
    model, adapters = adapted(space, width, same, seed=seed)
    x = torch.randn(5, width, dtype=torch.float64)
    alone, alone_grads, _ = output_and_grads(model, adapters, x, stacked=False)
    together, together_grads, count = output_and_grads(model, adapters, x, stacked=True)
    passes_params_through = space.name == "lora" and space.scaling == 1.0  # in fp64: nothing to save
    assert count == (0 if passes_params_through else same)  # the last layer has no partner
    torch.testing.assert_close(together, alone, rtol=1e-10, atol=1e-10)
    for got, expected in zip(together_grads, alone_grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


@PROPERTY
@given(seed=st.integers(0, 2**16), rank=st.integers(2, 4))
def test_a_rank_relaxed_stack_trains_its_lora_stacked_with_the_lidb_merged(seed, rank):
    model, adapters = adapted(lowdim.get_space("lidb", a=4, b=3), 6, 3, seed=seed)
    lowdim.relax_rank(adapters, "a", "relaxed", lowdim.get_space("lora", rank=rank, init="gaussian"))
    x = torch.randn(4, 6, dtype=torch.float64)
    with stacked_factors(model) as count:
        output = model(x)
    assert count == 3
    output.square().sum().backward()
    stacked_grads = [param.grad.clone() for param in adapters.parameters("relaxed")]
    for param in adapters.parameters("relaxed"):
        param.grad = None
    torch.testing.assert_close(output, model(x), rtol=1e-10, atol=1e-10)
    model(x).square().sum().backward()
    for got, param in zip(stacked_grads, adapters.parameters("relaxed"), strict=True):
        torch.testing.assert_close(got, param.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("space", [lowdim.get_space("lora", rank=4), lowdim.get_space("lidb", a=8, b=4)],
                         ids=["lora", "lidb"])
def test_a_half_precision_step_launches_per_shape_not_per_layer(space):
    """A bf16 model with fp32 adapters: per layer two casts (and LiDB's two basis products) each way."""
    layers = 12
    model, adapters = adapted(space, 16, layers, dtype=torch.bfloat16)
    x = torch.randn(2, 16, dtype=torch.bfloat16)
    counts = {}
    for stacked in (False, True, True):  # the second stacked call finds its frozen stack made
        with Operations() as launches:
            output_and_grads(model, adapters, x, stacked)
        counts[stacked] = sum(launches.ops.values())
    per_layer_saving = 4 if space.name == "lora" else 8
    assert counts[True] <= counts[False] - per_layer_saving * (layers - 3)


def test_shared_bases_are_stacked_once_and_the_stack_follows_every_change():
    model, adapters = adapted(lowdim.get_space("lidb", a=4, b=3), 6, 3)
    slots = [layer.slots["a"] for layer in list(model)[:3]]
    before = [slot.A_aux.clone() for slot in slots]
    x = torch.randn(4, 6, dtype=torch.float64)
    output_and_grads(model, adapters, x, stacked=True)
    stack = slots[0]._frozen_stack
    assert all(torch.equal(slot.A_aux, value) for slot, value in zip(slots, before, strict=True))
    output_and_grads(model, adapters, x, stacked=True)
    assert slots[0]._frozen_stack is stack  # unchanged: kept
    with torch.no_grad():
        slots[1].B_aux.mul_(2.0)  # in place
    changed, changed_grads, _ = output_and_grads(model, adapters, x, stacked=True)
    assert slots[0]._frozen_stack is not stack
    expected, expected_grads, _ = output_and_grads(model, adapters, x, stacked=False)
    torch.testing.assert_close(changed, expected)
    for got, wanted in zip(changed_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, wanted)
    slots[2].B_aux = torch.randn_like(slots[2].B_aux)  # replaced outright
    replaced, _, _ = output_and_grads(model, adapters, x, stacked=True)
    torch.testing.assert_close(replaced, output_and_grads(model, adapters, x, stacked=False)[0])


def test_nothing_is_stacked_without_gradients_or_for_slots_that_do_not_train_alone():
    model, adapters = adapted(lowdim.get_space("lora", rank=2, alpha=4.0), 5, 3)
    with torch.no_grad(), stacked_factors(model) as count:
        model(torch.randn(2, 5, dtype=torch.float64))
    assert count == 0
    adapters.add("b", lowdim.get_space("lora", rank=2, init="gaussian"), ["0", "1", "2"], batch=2)  # per sample
    adapters.disable("a")
    with stacked_factors(model) as count:
        pass
    assert count == 0


def test_a_slot_disabled_inside_the_context_adds_nothing():
    model, adapters = adapted(lowdim.get_space("lidb", a=4, b=3), 6, 3)
    x = torch.randn(4, 6, dtype=torch.float64)
    with stacked_factors(model):
        adapters.disable("a")
        output = model(x)
    adapters.enable("a")
    plain = x
    for layer in model:
        plain = layer.base_layer(plain)
    torch.testing.assert_close(output, plain)


def test_every_built_in_low_rank_space_stacks_and_a_plugin_space_opts_in():
    assert all(lowdim.get_space(name).stacks_layers() for name in ("lora", "lidb", "stack"))
    assert not lowdim.get_space("ti").stacks_layers()  # an embedding space: never in a linear group


@pytest.mark.parametrize("merged", ["a", "b"])
def test_two_adapters_of_one_stack_with_only_one_frozen_part_merged_keep_their_own_outputs(merged):
    # One space object behind both adapters (as relax_rank's callers reuse one): only the merged one's forward may
    # leave its frozen part out, the other still adds its own.
    stack = lowdim.spaces.StackSpace.of([(lowdim.get_space("lora", rank=2), None)], lowdim.get_space("lora", rank=3))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5)).double().requires_grad_(False)
    adapters = lowdim.Adapters(model)
    for name, seed in (("a", 1), ("b", 2)):
        adapters.add(name, stack, ["0", "2"], seed=seed)
        with torch.no_grad():  # every param non-zero, the frozen component's included (tensors() are the live ones)
            for layer in adapters.tensors(name).values():
                for param in layer.values():
                    param.copy_(torch.randn_like(param))
    adapters.merge(merged, part="frozen")
    x = torch.randn(4, 5, dtype=torch.float64)
    alone = model(x)
    with stacked_factors(model) as count:
        together = model(x)
    assert count == 4
    assert torch.allclose(together, alone, atol=1e-10)


def _same_shape_layers(count: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(4, 4) for _ in range(count)]).double().requires_grad_(False)


def test_an_override_inside_the_context_runs_with_the_override_not_the_params():
    # A hypernetwork's training step: its predicted tensors, not the adapter's own params, must reach the output.
    model = _same_shape_layers(2)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0", "1"], seed=1)
    predicted = {layer: {key: torch.randn_like(value, requires_grad=True) for key, value in tensors.items()}
                 for layer, tensors in adapters.tensors().items()}
    x = torch.randn(3, 4, dtype=torch.float64)
    with adapters.override("default", predicted):
        alone = model(x)
        with stacked_factors(model) as count:
            together = model(x)
    assert torch.allclose(together, alone, atol=1e-12)
    assert count == 0  # the override's tensors are the slots' own per call: nothing to stack


def test_the_count_is_the_slots_that_use_the_stacked_factors():
    model = _same_shape_layers(4)
    adapters = lowdim.Adapters(model)
    adapters.add("a", lowdim.get_space("lora", rank=2), ["0", "1"], seed=1)
    with stacked_factors(model) as count:
        assert count == 2
    # Layers wrapped after the model was first walked are found too.
    adapters.add("b", lowdim.get_space("lora", rank=2), ["2", "3"], seed=2)
    with stacked_factors(model) as count:
        assert count == 4
    # A merged adapter's update is in the weights: its slots take no factors, so they are not counted.
    adapters.merge("b")
    with stacked_factors(model) as count:
        assert count == 2
