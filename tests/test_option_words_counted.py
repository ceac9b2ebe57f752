"""``counted``: the number and the noun in the number it needs, so no message says "1 layer(s)" (review EZ,
finding 6); and the core's messages that said "(s)" now say the singular for one."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim.option_words import counted

nouns = st.text(alphabet="abcdefghijklmnopqrstuvwxyz -", min_size=1, max_size=12)


@given(nouns)
def test_one_takes_the_singular(noun):
    assert counted(1, noun) == f"1 {noun}" == counted(1, noun, plural="other words", grouped=True)


@given(st.integers().filter(lambda n: n != 1), nouns)
def test_any_other_number_takes_the_plural(n, noun):
    assert counted(n, noun) == f"{n} {noun}s"
    assert counted(n, noun, plural="identities") == f"{n} identities"


@given(st.integers(min_value=0, max_value=10**12), nouns)
def test_grouped_puts_a_comma_between_each_three_digits_and_changes_nothing_else(n, noun):
    number, _, rest = counted(n, noun, grouped=True).partition(" ")
    assert number.replace(",", "") == str(n) and rest == counted(n, noun).partition(" ")[2]
    groups = number.split(",")
    assert 1 <= len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:])


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)
        self.lin = nn.Linear(8, 8)


def test_one_layer_adapted_beside_a_skipped_attention_is_said_in_the_singular():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lowdim.inject(_Attention(), lowdim.get_space("lora"), ["*"])
    said = [str(w.message) for w in caught if "MultiheadAttention" in str(w.message)]
    assert len(said) == 1 and "also match 1 nn.MultiheadAttention layer (e.g. attn)" in said[0], said
    assert said[0].endswith("only 1 layer gets the adapter, e.g. lin"), said[0]


def test_a_bare_module_name_that_one_layer_ends_in_is_said_in_the_singular():
    model = nn.ModuleDict({"blk": nn.ModuleDict({"q": nn.Linear(4, 4)})})
    with pytest.raises(LowdimError, match=r"'\*\.q' is the one that matches the 1 layer named q, e.g. blk\.q"):
        lowdim.inject(model, lowdim.get_space("lora"), ["q"])
