"""``stacked_factors`` leaves the model as it found it, and refuses a model that recomputes its layers.

What users rely on: a training forward inside the context changes nothing the model computes afterwards
(same params, same output, bit for bit), so a model saved before and reloaded computes exactly what the
trained one does; and a model under gradient checkpointing gets one clear line before any forward instead
of a torch ``CheckpointError`` from deep inside backward.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim import stacked_factors

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    REGISTRY = lowdim.Registry.from_plugins(load_entry_points=True)
PROPERTY = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LAYER = lowdim.LayerSpec("probe", 8, 8)


@pytest.fixture(autouse=True, scope="module")
def _registry():
    with lowdim.use_registry(REGISTRY):
        yield


def stacking_spaces() -> list[str]:
    """Every registered linear space that stacks, built from sampled configs; the rank-relaxed stack is
    built by ``relax_rank`` in its own test."""
    names = []
    for name in sorted(REGISTRY.spaces):
        space_class = REGISTRY.space_class(name)
        if name == "stack" or getattr(space_class, "learns_tokens", False):
            continue
        config = space_class.sample_config(random.Random(0), LAYER)
        if REGISTRY.make_space(name, config).stacks_layers():
            names.append(name)
    return names


def model_of(width: int, layers: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])
    return model.requires_grad_(False)


def trained_params(adapters: lowdim.Adapters, name: str) -> None:
    with torch.no_grad():
        for param in adapters.parameters(name):
            param.copy_(torch.randn_like(param))


def one_stacked_step(model: nn.Module, x: torch.Tensor) -> int:
    """One training forward and backward inside the context, and no optimizer step: the params stay."""
    model.train()
    with stacked_factors(model) as count:
        model(x).square().sum().backward()
    model.eval()
    return count


def test_stacking_spaces_are_found():
    assert {"lora", "lidb"} <= set(stacking_spaces())


@pytest.mark.parametrize("space_name", stacking_spaces())
@PROPERTY
@given(seed=st.integers(0, 2**16), width=st.integers(12, 40), layers=st.integers(2, 4))
def test_after_the_context_the_model_computes_what_it_did_and_a_reload_equals_it(
        space_name, seed, width, layers, tmp_path_factory):
    rng = random.Random(seed)
    space = REGISTRY.make_space(space_name, REGISTRY.space_class(space_name).sample_config(
        rng, lowdim.LayerSpec("probe", width, width)))
    model = model_of(width, layers, seed)
    adapters = lowdim.Adapters(model)
    adapters.add("a", space, [str(i) for i in range(layers)], seed=seed)
    trained_params(adapters, "a")
    path = tmp_path_factory.mktemp("stacked") / "a.safetensors"
    lowdim.save_adapter(path, model, "a")
    x = torch.randn(5, width)
    before = model.eval()(x)
    one_stacked_step(model, x)
    after = model(x)
    assert torch.equal(after, before)
    fresh = model_of(width, layers, seed)
    lowdim.load_adapter(path, fresh)
    assert torch.equal(fresh(x), after)


@pytest.mark.parametrize("merge_frozen", [True, False])
def test_a_rank_relaxed_stack_is_left_as_it_was(merge_frozen):
    model = model_of(32, 3, 1)
    adapters = lowdim.Adapters(model)
    adapters.add("a", lowdim.get_space("lidb", a=8, b=8, init="gaussian"), ["0", "1", "2"], seed=1)
    lowdim.relax_rank(adapters, "a", "relaxed", lowdim.get_space("lora", rank=2, alpha=4.0, init="gaussian"),
                      merge_frozen=merge_frozen)
    x = torch.randn(6, 32)
    before = model.eval()(x)
    assert one_stacked_step(model, x) == 3
    assert torch.equal(model(x), before)


def test_the_slots_keep_their_own_buffers():
    model = model_of(32, 3, 0)
    adapters = lowdim.Adapters(model)
    adapters.add("a", lowdim.get_space("lidb", a=8, b=8, init="gaussian"), ["0", "1", "2"], seed=1)
    slots = [layer.slots["a"] for layer in model]
    kept = [dict(slot._buffers) for slot in slots]
    strides = [{name: value.stride() for name, value in buffers.items()} for buffers in kept]
    one_stacked_step(model, torch.randn(4, 32))
    for slot, buffers, stride in zip(slots, kept, strides, strict=True):
        assert all(slot._buffers[name] is value for name, value in buffers.items())
        assert {name: value.stride() for name, value in slot._buffers.items()} == stride
        assert slot.step_factors is None


class Checkpointed(nn.Module):
    """A block that recomputes in backward as transformers' and diffusers' blocks do, by their flag."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.gradient_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self.proj, x, use_reentrant=False)
        return self.proj(x)


def test_gradient_checkpointing_is_one_clear_line_before_any_forward():
    model = nn.Sequential(Checkpointed(8), Checkpointed(8)).requires_grad_(False)
    lowdim.inject(model, lowdim.get_space("lidb", a=4, b=4), ["0.proj", "1.proj"])
    with stacked_factors(model) as count:  # off: stacks
        model(torch.randn(2, 8)).sum().backward()
    assert count == 2
    model[1].gradient_checkpointing = True
    with pytest.raises(lowdim.LowdimError, match=r"gradient checkpointing.*'1'") as raised, stacked_factors(model):
        pytest.fail("the context was entered")
    assert "\n" not in str(raised.value)
    with torch.no_grad(), stacked_factors(model) as count:  # without gradients it changes nothing: allowed
        model(torch.randn(2, 8))
    assert count == 0


def test_a_transformers_model_under_gradient_checkpointing_is_refused():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=16)
    torch.manual_seed(0)
    model = transformers.BertModel(config).requires_grad_(False)
    lowdim.inject(model, lowdim.get_space("lidb", a=8, b=8), ["*.attention.self.query", "*.attention.self.value"])
    (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()  # 5 or 4
    model.train()
    with pytest.raises(lowdim.LowdimError, match="gradient checkpointing"), stacked_factors(model):
        pytest.fail("the context was entered")
    (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
    with stacked_factors(model) as count:
        model(torch.randint(0, 64, (2, 10))).last_hidden_state.pow(2).mean().backward()
    assert count == 4
