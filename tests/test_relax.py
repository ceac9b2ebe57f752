"""relax_rank keeps the model's output whatever each layer's scale, and never loses the adapter it relaxes."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim


def predicted(seed: int = 5, batch: int | None = None) -> tuple[nn.Module, lowdim.Adapters, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 16), nn.GELU(), nn.Linear(16, 2))
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=12, b=10), ["0", "2", "4"], seed=seed, name="hyper",
                             batch=batch)
    with torch.no_grad():
        for param in adapters.parameters("hyper"):
            param.copy_(torch.randn_like(param))
    return model, adapters, torch.randn(6, 24)


@settings(max_examples=20, deadline=None)
@given(scales=st.lists(st.sampled_from([0.0, 0.5, 1.0, -1.5]), min_size=3, max_size=3), merge_frozen=st.booleans(),
       space=st.sampled_from(["lora", "lidb"]))
def test_relax_rank_keeps_every_layers_scale_so_the_output_is_unchanged(scales, merge_frozen, space):
    model, adapters, x = predicted()
    for layer, scale in zip(["0", "2", "4"], scales, strict=True):
        adapters.set_scale("hyper", scale, layers=layer)
    before = model(x).detach()
    options = {"rank": 2} if space == "lora" else {"a": 6, "b": 5, "rank": 2}
    lowdim.relax_rank(adapters, "hyper", "fast", lowdim.get_space(space, **options), merge_frozen=merge_frozen)
    assert [slot.scale for slot in adapters.slots("fast").values()] == scales
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


def test_a_stack_that_cannot_be_built_puts_the_old_adapter_back_as_it_was():
    model, adapters, x = predicted()
    adapters.set_scale("hyper", 0.5, layers="2")
    adapters.info("hyper").metadata.update(token="sks", base_model="toy")
    before = model(x).detach()
    with pytest.raises(lowdim.ConfigError, match="too small for rank 3"):  # layer 4 is 2x16
        lowdim.relax_rank(adapters, "hyper", "fast", lowdim.get_space("lidb", a=4, b=4, rank=3))
    assert adapters.names() == ["hyper"] and adapters.info("hyper").metadata["token"] == "sks"
    assert [slot.scale for slot in adapters.slots("hyper").values()] == [1.0, 0.5, 1.0]
    torch.testing.assert_close(model(x), before)


def test_what_relax_rank_cannot_do_is_refused_before_anything_changes():
    model, adapters, x = predicted()
    adapters.disable("hyper")
    with pytest.raises(lowdim.LowdimError, match="'hyper' is disabled: enable it first"):
        lowdim.relax_rank(adapters, "hyper", "fast", lowdim.get_space("lora", rank=2))
    _, batched, _ = predicted(batch=2)
    with pytest.raises(lowdim.LowdimError, match="2 per-sample adapters, which cannot be merged"):
        lowdim.relax_rank(batched, "hyper", "fast", lowdim.get_space("lora", rank=2))
    assert adapters.names() == ["hyper"] and batched.names() == ["hyper"]
    assert lowdim.relax_rank(batched, "hyper", "fast", lowdim.get_space("lora", rank=2), merge_frozen=False).batch == 2


def test_relax_rank_keeps_the_token_and_base_model_a_file_named(tmp_path):
    model, adapters, _ = predicted()
    path = lowdim.save_adapter(tmp_path / "p.safetensors", adapters, "hyper", base_model="toy", token="sks")
    fresh, _, _ = predicted()
    view = lowdim.Adapters(fresh)
    for name in view.names():
        view.delete(name)
    lowdim.load_adapter(path, view)
    info = lowdim.relax_rank(view, "hyper", "fast", lowdim.get_space("lora", rank=2))
    assert (info.metadata["base_model"], info.metadata["token"]) == ("toy", "sks")


def test_the_trainable_part_starts_from_the_old_adapters_seed_unless_given_another():
    """A relaxed adapter's start is reproducible, and its file records the seed its trainable part started from."""
    def relaxed(**seed: int) -> tuple[lowdim.AdapterInfo, dict[str, torch.Tensor]]:
        _, adapters, _ = predicted(seed=5)
        info = lowdim.relax_rank(adapters, "hyper", "fast", lowdim.get_space("lora", rank=2), **seed)
        return info, {layer: tensors["c1_down"] for layer, tensors in adapters.tensors("fast").items()}

    (default, started), (same, again), (other, elsewhere) = relaxed(), relaxed(seed=5), relaxed(seed=9)
    zero, at_zero = relaxed(seed=0)  # a seed of 0 is a seed, not "none given"
    assert (default.seed, same.seed, other.seed, zero.seed) == (5, 5, 9, 0)
    assert all(torch.equal(started[layer], again[layer]) for layer in started)
    assert not any(torch.equal(started[layer], elsewhere[layer]) for layer in started)
    assert not any(torch.equal(started[layer], at_zero[layer]) for layer in started)


def test_an_adapter_put_back_after_a_failed_relax_does_not_warn_of_its_rank_again():
    """Its rank beyond a layer's was said once, when it was injected; the put-back is no new choice of rank."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 40), nn.GELU(), nn.Linear(40, 16), nn.GELU(), nn.Linear(16, 2))
    with pytest.warns(UserWarning, match="the rank exceeds what the layer holds"):
        adapters = lowdim.inject(model, lowdim.get_space("lora", rank=8), ["0", "4"], name="wide")  # layer 4: 2x16
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(lowdim.ConfigError, match="too small for rank 3"):
            lowdim.relax_rank(adapters, "wide", "fast", lowdim.get_space("lidb", a=4, b=4, rank=3))
    assert adapters.names() == ["wide"]
    assert not [str(w.message) for w in caught if "rank exceeds" in str(w.message)]
