"""A no-grad forward asks ``torch.compiler.is_compiling()`` once per adapted layer, not once more per slot in
``call_factors``: it is a hot path (every layer of every generation step). ``call_factors`` takes the answer as
a keyword; its callers that give none still get it asked for them. And ``lowdim.injection.layer`` keeps giving the
names it gave before the slot moved to ``lowdim/injection/slot.py`` (models pickled whole name them there)."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

import lowdim
from lowdim.injection import factor_cache


def adapted(layers: int) -> tuple[nn.Module, list[str]]:
    torch.manual_seed(0)
    model = nn.Sequential(*(nn.Linear(6, 6) for _ in range(layers))).requires_grad_(False)
    names = [str(i) for i in range(layers)]
    lowdim.inject(model, lowdim.get_space("lora", rank=2, init="gaussian"), names, seed=1)
    return model, names


def count_is_compiling(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every ask, from whichever lowdim.injection module holds its own reference to ``is_compiling``."""
    from lowdim.injection import layer as layer_module  # ``import lowdim.injection.layer`` meets the function inject

    asked = [0]

    def counted() -> bool:
        asked[0] += 1
        return False

    for module in (factor_cache, layer_module):
        monkeypatch.setattr(module, "is_compiling", counted)
    return asked


def test_a_no_grad_forward_asks_is_compiling_once_per_layer(monkeypatch):
    model, names = adapted(3)
    x = torch.randn(2, 6)
    with torch.no_grad():
        model(x)  # the first call makes and keeps the factors
    asked = count_is_compiling(monkeypatch)
    with torch.no_grad():
        model(x)
    assert asked[0] == len(names)


def test_call_factors_asks_for_itself_without_the_keyword_and_obeys_it_with(monkeypatch):
    model, _ = adapted(1)
    slot = model[0].slots["default"]
    asked = count_is_compiling(monkeypatch)
    with torch.no_grad():
        kept = factor_cache.call_factors(slot, torch.float32)
        assert asked[0] == 1
        assert factor_cache.call_factors(slot, torch.float32) is kept  # kept between no-grad calls
        compiled = factor_cache.call_factors(slot, torch.float32, compiling=True)
        assert asked[0] == 2  # the keyword's answer is used, never asked again
    assert compiled is not kept and all(torch.equal(a, b) for a, b in zip(compiled, kept, strict=True))
    with torch.no_grad():
        assert slot.call_factors(torch.float32, compiling=False) is kept  # the method form takes it too


def test_the_layer_module_still_gives_the_slot_names_and_a_pickled_model_loads():
    from lowdim.injection import layer, slot

    assert (layer.AdapterSlot, layer.AdapterParams, layer.SCALE) == (slot.AdapterSlot, slot.AdapterParams, slot.SCALE)
    model, _ = adapted(2)
    x = torch.randn(2, 6)
    loaded = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
