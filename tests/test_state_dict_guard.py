"""A model's own state_dict() records each adapter's frozen-bases fingerprint and merged state, and loading one
refuses a state dict that would match key for key yet compute something else (lowdim/injection/state_guard.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim.injection.state_guard import BASES, MERGED
from lowdim.spaces.base import LayerSpec, Space
from lowdim.testing.space_contract import (
    LAYERS,
    PROPERTY,
    SPACES,
    cases,
    contract_registry,  # noqa: F401  the fixture: plugin spaces resolve
    make_space,
)


def injected(space: Space, layer: LayerSpec, seed: int, dtype: torch.dtype = torch.float32, *,
             name: str = "default", batch: int | None = None, values: int = 0) -> tuple[nn.Module, lowdim.Adapters]:
    """The same base model every call; an adapter with random params drawn from ``values``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(layer.in_features, layer.out_features), nn.Tanh(),
                          nn.Linear(layer.out_features, layer.in_features))
    adapters = lowdim.inject(model, space, LAYERS, name=name, seed=seed, batch=batch)
    generator = torch.Generator().manual_seed(values)
    with torch.no_grad():
        for param in adapters.parameters(name):
            param.copy_(torch.randn(param.shape, generator=generator))
    return model.to(dtype), adapters


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, before[key]) for key, value in model.state_dict().items())


def first_layer_whose_bases_differ(a: lowdim.Adapters, b: lowdim.Adapters) -> str | None:
    """The first layer, in the model's order, where the two adapters' frozen bases differ (None: nowhere).

    Not always the first layer: where a dimension is 1, a LiDB basis is ±aux_scale, so two seeds agree on a
    layer about half the time."""
    mine, theirs = a.buffers(), b.buffers()
    for layer, buffers in mine.items():
        if any(not torch.equal(value, theirs[layer][key]) for key, value in buffers.items()):
            return layer
    return None


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), other_seed=st.integers(0, 2**31 - 1))
def test_a_state_dict_loads_bit_identically_or_is_refused_where_the_bases_differ(space_name, case, other_seed):
    space = make_space(space_name, case)
    source, source_adapters = injected(space, case["layer"], case["seed"], case["dtype"], values=1)
    target, target_adapters = injected(space, case["layer"], other_seed, case["dtype"], values=2)
    before, x = snapshot(target), torch.randn(5, case["layer"].in_features, dtype=case["dtype"])
    twin, _ = injected(space, case["layer"], case["seed"], case["dtype"], values=2)
    assert not twin.load_state_dict(source.state_dict(), strict=True).missing_keys
    assert torch.equal(twin(x), source(x))
    differing = first_layer_whose_bases_differ(source_adapters, target_adapters)
    if differing is not None:
        refusal = rf"^state dict for layer {differing}, adapter 'default'.*same seed.*save_adapter/load_adapter"
        with pytest.raises(LowdimError, match=refusal):
            target.load_state_dict(source.state_dict())
        assert unchanged(target, before)  # refused before anything was copied
    else:  # same bases (same seed, or a space whose frozen state needs none): every key, every output
        assert not target.load_state_dict(source.state_dict(), strict=True).missing_keys
        assert torch.equal(target(x), source(x))


def test_the_refusal_names_the_first_layer_whose_bases_differ_not_always_layer_0():
    # A 1x1 layer's LiDB bases are ±aux_scale: these two seeds agree on layer 0 and differ on layer 2.
    layer = LayerSpec("blk.0.q", 1, 1)
    space = lowdim.get_space(LIDB, a=2, b=1, rank=1)
    source, source_adapters = injected(space, layer, seed=1, values=1)
    target, target_adapters = injected(space, layer, seed=21413, values=2)
    assert first_layer_whose_bases_differ(source_adapters, target_adapters) == "2"
    with pytest.raises(LowdimError, match=r"^state dict for layer 2, adapter 'default'"):
        target.load_state_dict(source.state_dict())


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), scale=st.sampled_from([1.0, 0.5, -2.0]))
def test_the_merged_state_must_match(space_name, case, scale):
    space = make_space(space_name, case)
    source, source_adapters = injected(space, case["layer"], case["seed"], case["dtype"], values=1)
    target, target_adapters = injected(space, case["layer"], case["seed"], case["dtype"], values=2)
    source_adapters.set_scale("default", scale)
    source_adapters.merge()
    before = snapshot(target)
    with pytest.raises(LowdimError, match=r"layer 0, adapter 'default'.*merged into the base weight.*unmerged"):
        target.load_state_dict(source.state_dict())
    assert unchanged(target, before)
    target_adapters.merge()  # merged at scale 1: another scale than the source's is refused too
    if scale != 1.0:
        with pytest.raises(LowdimError, match="merged into the base weight at scale 1,"):
            target.load_state_dict(source.state_dict())
        target_adapters.unmerge()
        target_adapters.set_scale("default", scale)
        target_adapters.merge()
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(5, case["layer"].in_features, dtype=case["dtype"])
    with torch.no_grad():  # evaluated, as a merged model is: with grad on lowdim warns to unmerge before training
        assert torch.equal(target(x), source(x))
    # What unmerge subtracts is what the loaded params add: both models are back on the same base weights.
    source_adapters.unmerge()
    target_adapters.unmerge()
    assert unchanged(target, snapshot(source))


@pytest.mark.parametrize("space_name", SPACES)
@PROPERTY
@given(case=cases(), other_seed=st.integers(0, 2**31 - 1))
def test_a_state_dict_without_the_new_keys_loads_as_before(space_name, case, other_seed):
    space = make_space(space_name, case)
    source, _ = injected(space, case["layer"], case["seed"], case["dtype"], values=1)
    old = {key: value for key, value in source.state_dict().items() if not key.endswith((BASES, MERGED))}
    target, _ = injected(space, case["layer"], case["seed"], case["dtype"], values=2)
    assert not target.load_state_dict(old, strict=True).missing_keys
    x = torch.randn(5, case["layer"].in_features, dtype=case["dtype"])
    assert torch.equal(target(x), source(x))
    other, _ = injected(space, case["layer"], other_seed, case["dtype"])
    other.load_state_dict(old, strict=True)  # nothing to compare it with: unchecked, as it always was


LIDB, LAYER = "lidb", LayerSpec("x", 12, 10)


def test_the_fingerprint_is_no_float_and_half_does_not_cast_it():
    model, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3)
    state = model.state_dict()
    model.half()
    for key, value in model.state_dict().items():
        if key.endswith((BASES, MERGED)):
            assert value.dtype == torch.int64 and torch.equal(value, state[key]), key
    fresh, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3, dtype=torch.float16)
    fresh.load_state_dict(model.state_dict(), strict=True)
    other, _ = injected(lowdim.get_space(LIDB), LAYER, seed=4, dtype=torch.float16)
    with pytest.raises(LowdimError, match="layer 0"):
        other.load_state_dict(model.state_dict())


def test_a_fingerprint_cast_to_a_float_is_not_trusted_and_loads_as_an_old_state_dict():
    model, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3)
    cast = {key: value.half() if key.endswith(BASES) else value for key, value in model.state_dict().items()}
    twin, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3)
    twin.load_state_dict(cast, strict=True)


def test_per_sample_adapters_round_trip_and_are_checked():
    model, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3, batch=3, values=1)
    twin, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3, batch=3, values=2)
    twin.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(6, LAYER.in_features)
    assert torch.equal(twin(x), model(x))
    other, _ = injected(lowdim.get_space(LIDB), LAYER, seed=4, batch=3)
    with pytest.raises(LowdimError, match="layer 0"):
        other.load_state_dict(model.state_dict())


def test_a_submodule_load_is_checked_and_the_message_names_the_adapter():
    model, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3, name="style")
    other, _ = injected(lowdim.get_space(LIDB), LAYER, seed=4, name="style")
    with pytest.raises(LowdimError, match=r"layer 2, adapter 'style'"):
        other[2].load_state_dict(model[2].state_dict())
    wrapped = nn.ModuleDict({"net": model})  # a prefix in front of every key: same check
    outer = nn.ModuleDict({"net": other})
    with pytest.raises(LowdimError, match=r"layer 0, adapter 'style'"):
        outer.load_state_dict(wrapped.state_dict())


def test_a_stack_with_its_frozen_part_merged_is_refused_by_an_unmerged_one():
    space = lowdim.get_space("stack")
    model, adapters = injected(space, LAYER, seed=3)
    adapters.merge(part="frozen")
    twin, twin_adapters = injected(space, LAYER, seed=3)
    with pytest.raises(LowdimError, match="its frozen part merged"):
        twin.load_state_dict(model.state_dict())
    twin_adapters.merge(part="frozen")
    twin.load_state_dict(model.state_dict(), strict=True)


def test_bases_written_after_injection_change_the_fingerprint():
    model, adapters = injected(lowdim.get_space(LIDB), LAYER, seed=3)
    other, other_adapters = injected(lowdim.get_space(LIDB), LAYER, seed=4)
    with pytest.raises(LowdimError):
        other.load_state_dict(model.state_dict())
    other_adapters.load_buffers("default", adapters.buffers())  # as load_adapter does for a store_bases file
    other.load_state_dict(model.state_dict(), strict=True)


def test_the_meta_device_saves_and_loads_without_values():
    model, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3)
    model.to("meta")
    state = model.state_dict()
    assert state[f"0.slots.default.{BASES}"].is_meta
    twin, _ = injected(lowdim.get_space(LIDB), LAYER, seed=3)
    twin.to("meta").load_state_dict(state, strict=True)


def test_a_model_without_adapters_keeps_no_hook_and_a_plain_state_dict():
    model, adapters = injected(lowdim.get_space(LIDB), LAYER, seed=3)
    assert model._load_state_dict_pre_hooks
    adapters.merge_and_unload()
    assert not model._load_state_dict_pre_hooks and list(model.state_dict()) == ["0.weight", "0.bias",
                                                                                  "2.weight", "2.bias"]
    model, adapters = injected(lowdim.get_space(LIDB), LAYER, seed=3)
    adapters.remove_all()
    assert not model._load_state_dict_pre_hooks
