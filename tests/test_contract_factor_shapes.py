"""The shared contract suite checks one sample's factors against the layer before it compares their width with
``rank()`` (review DI, finding 6): a transposed ``down`` is named as the factor that is wrong, with its shape and the
one LoRA's form needs, not blamed on a correct ``rank()``, and the delta property says the same instead of torch's
bare "mat1 and mat2 shapes cannot be multiplied"."""

from __future__ import annotations

import random

import pytest
import torch
from test_plugins import plugin_module
from test_space_checks import UpOnly

import lowdim
from lowdim.testing import REFERENCE_DELTA, contract_cases
from lowdim.testing import space_contract as suite

CASE = {"layer": lowdim.LayerSpec("blk.q", 6, 8), "rng": random.Random(0), "seed": 3, "dtype": torch.float64}
FACTORS = suite.test_factors_and_delta_give_the_spaces_own_update_within_its_rank.hypothesis.inner_test
DELTA = suite.test_delta_is_the_product_of_the_factors.hypothesis.inner_test


class DownTransposed(UpOnly):
    """``down`` returned as (in, r): its ``rank()`` override, the config's rank, is right."""

    name = "down-t"

    def rank(self, layer):
        return self.config.rank

    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return down.transpose(-1, -2), up


class UpTransposed(UpOnly):
    name = "up-t"

    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return down, up.transpose(-1, -2)


class RankOneTooWide(UpOnly):
    name = "rank-wide"

    def rank(self, layer):
        return self.config.rank + 1


@pytest.fixture(autouse=True)
def slips(monkeypatch):
    """The suite's registry, with the slips in it: the properties build their space from it by name."""
    spaces = (UpOnly, DownTransposed, UpTransposed, RankOneTooWide)
    module = plugin_module("slips", register_spaces=lambda register: [register(space) for space in spaces])
    registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    monkeypatch.setattr(contract_cases, "REGISTRY", registry)
    with lowdim.use_registry(registry):
        yield


def failure(prop, space_name: str) -> str:
    with pytest.raises(AssertionError) as raised:
        prop(space_name=space_name, case=CASE)
    return str(raised.value)


@pytest.mark.parametrize("with_formula", [False, True])
def test_a_transposed_down_is_named_with_its_shape_not_blamed_on_a_correct_rank(with_formula, monkeypatch):
    if with_formula:  # as docs/plugins.md's test module does: the paper's formula, apart from factors
        monkeypatch.setitem(REFERENCE_DELTA, "down-t", lambda space, params, buffers: params["up"] @ buffers["down"])
    said = failure(FACTORS, "down-t")
    assert "space 'down-t' on a 6x8 layer: factors gave down (8, 2), which must be (r, 8)" in said
    assert "transposed" in said and "up (6, 2) is right" in said
    assert "rank()" not in said


def test_the_delta_property_names_a_transposed_down_instead_of_a_bare_torch_error():
    said = failure(DELTA, "down-t")
    assert "factors gave down (8, 2), which must be (r, 8)" in said and "mat1" not in said


def test_a_transposed_up_is_named_as_up():
    said = failure(FACTORS, "up-t")
    assert "up (2, 6), which must be (6, r)" in said and "transposed" in said
    assert "down (2, 8) is right" in said and "rank()" not in said


def test_a_rank_that_is_not_the_factors_width_is_still_named_once_the_shapes_fit():
    said = failure(FACTORS, "rank-wide")
    assert "rank() says 3 but factors are 2 wide" in said


def test_a_correct_space_passes_both_properties():
    FACTORS(space_name="up-only", case=CASE)
    DELTA(space_name="up-only", case=CASE)
