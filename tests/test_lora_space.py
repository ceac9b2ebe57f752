"""LoRA's own options and notes: what `lowdim spaces` and the inject summary tell a user about a LoRA config."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lowdim
from lowdim.spaces import LayerSpec, LoraSpace


@settings(max_examples=40, deadline=None)
@given(out_features=st.integers(1, 12), in_features=st.integers(1, 12), extra=st.integers(0, 3))
def test_a_rank_up_to_the_layer_s_smaller_side_gets_no_note_and_a_larger_one_is_named(out_features, in_features, extra):
    layer = LayerSpec("blk.q", out_features, in_features)
    most = min(out_features, in_features)
    for rank in range(1, most + 1):  # each of these ranks is reachable: nothing to warn about
        assert LoraSpace(rank=rank).describe(layer) is None, rank
    note = LoraSpace(rank=most + 1 + extra).describe(layer)
    assert note is not None and f"rank={most + 1 + extra} exceeds blk.q's {out_features}x{in_features}" in note


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_an_alpha_that_would_zero_or_flip_the_update_is_refused(alpha):
    # alpha = 0 makes every update zero whatever is trained: a run that silently learns nothing.
    with pytest.raises(lowdim.ConfigError, match=f"lora: alpha must be > 0, got {alpha}"):
        LoraSpace(alpha=alpha)
