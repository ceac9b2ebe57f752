"""covers(outer, inner): a prediction for ``outer``'s layers can be cut down to ``inner``'s."""

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

from lowdim.errors import LowdimError
from lowdim.injection import LayerSet, covers, select_layers
from lowdim.injection.matching import matches

PATTERNS = ["*attn1.*", "*attn2.*", "*.to_q", "*.to_k", "text.*", "unet.*", "re:.*proj", "*.down.*"]


def _tree() -> nn.Module:
    def block(*names: str) -> nn.ModuleDict:
        return nn.ModuleDict({name: nn.Linear(2, 2) for name in names})

    attention = {"attn1": block("to_q", "to_k"), "attn2": block("to_q", "to_k")}
    return nn.ModuleDict({
        "unet": nn.ModuleDict({"down": nn.ModuleDict(attention), "up": nn.ModuleDict({"attn1": block("to_q")})}),
        "text": nn.ModuleDict({"layer": block("q_proj", "k_proj")}),
    })


MODEL = _tree()
subsets = st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=4, unique=True).map(tuple)


def _selected(layer_set: LayerSet) -> set[str]:
    try:
        return {name for name, _ in select_layers(MODEL, layer_set)}
    except LowdimError:  # a pattern that matches nothing in this tree
        assume(False)
        raise


excludes = st.lists(st.sampled_from(PATTERNS), max_size=2, unique=True).map(tuple)


@given(subsets, excludes, subsets, excludes)
def test_a_covering_set_selects_every_layer_of_the_covered_one(outer, outer_exclude, inner, inner_exclude):
    wide = LayerSet("wide", outer, exclude=outer_exclude)
    narrow = LayerSet("narrow", inner, exclude=inner_exclude)
    if covers(wide, narrow):
        assert _selected(narrow) <= _selected(wide)


def test_the_sd_sets_nest_as_their_names_say():
    from lowdim_sd.architecture import LAYER_SETS

    whole = LAYER_SETS["unet+text"]
    assert all(covers(whole, LAYER_SETS[name]) for name in ("unet", "unet-self", "unet-cross", "text"))
    assert not covers(LAYER_SETS["unet"], whole) and not covers(LAYER_SETS["unet-self"], LAYER_SETS["unet-cross"])
    assert not covers(whole, LayerSet.from_patterns("*attn1.to_q"))  # a glob of its own: not decided, refused


NAMES = ["unet.down.attn1.to_q", "unet.down.attn2.to_k", "unet.up.attn1.to_q", "text.layer.q_proj", "text.layer"]
# Plain names as a glob, as an escaped regex (exact_layers), and names of no layer; globs and regexes.
ANY_PATTERN = st.one_of(st.sampled_from(PATTERNS), st.sampled_from(NAMES),
                        st.sampled_from(NAMES).map(lambda name: "re:" + re.escape(name)),
                        st.sampled_from(["re:unet\\.down\\..*", "re:.*to_[qk]", "unet.*.to_?", "[tu]*q*"]))


@given(st.lists(ANY_PATTERN, min_size=1, max_size=5).map(tuple), st.lists(ANY_PATTERN, max_size=3).map(tuple))
def test_selection_is_each_candidate_matching_an_include_and_no_exclude(include, exclude):
    """select_layers compiles patterns once and looks plain names up in a set: the same answer as matching
    every pattern against every name, or the same refusal."""
    layer_set = LayerSet("s", include, exclude, types=("linear",))
    candidates = [name for name, module in MODEL.named_modules() if isinstance(module, nn.Linear)]
    if any(not any(matches(p, name) for name in candidates) for p in include):
        with pytest.raises(LowdimError, match="matches no linear layer"):
            select_layers(MODEL, layer_set)
        return
    expected = [name for name in candidates
                if any(matches(p, name) for p in include) and not any(matches(p, name) for p in exclude)]
    assert [name for name, _ in select_layers(MODEL, layer_set)] == expected
