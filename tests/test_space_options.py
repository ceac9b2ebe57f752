"""A space's options as they arrive from JSON, YAML, the command line or numpy: each is taken as its declared type
or refused in one line naming it, never rounded, cast from a bool or left non-finite."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowdim
from lowdim.spaces import LoraSpace

FAST = settings(max_examples=40, deadline=None)


@FAST
@given(rank=st.integers(1, 64))
def test_a_whole_number_written_as_a_float_is_that_integer(rank):
    space = lowdim.get_space("lora", rank=float(rank))  # 4.0 from a JSON or YAML file
    assert space.config.rank == rank and type(space.config.rank) is int


@FAST
@given(rank=st.floats(1, 64).filter(lambda value: not value.is_integer()))
def test_a_fractional_rank_is_refused_not_rounded(rank):
    with pytest.raises(lowdim.ConfigError, match=r"lora: option rank must be an integer, got "):
        lowdim.get_space("lora", rank=rank)


@pytest.mark.parametrize("value", [True, False])
def test_a_bool_is_not_taken_as_an_integer(value):
    with pytest.raises(lowdim.ConfigError, match=f"lora: option rank must be an integer, got {value}"):
        lowdim.get_space("lora", rank=value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_non_finite_number_is_refused(value):
    with pytest.raises(lowdim.ConfigError, match="lora: option init_std must be a finite number"):
        lowdim.get_space("lora", init_std=value)


@FAST
@given(first=st.integers(1, 8), second=st.integers(1, 8))
def test_overrides_given_with_a_config_win_over_it(first, second):
    space = LoraSpace(LoraSpace(rank=first).config, rank=second)
    assert space.config.rank == second
