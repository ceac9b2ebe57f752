"""precompute trains with the engine itself, under the name tests patch to count or stop its calls."""

from __future__ import annotations

import lowdim_sd.precompute as pre
import lowdim_sd.train


def test_precompute_trains_with_the_engine_itself_not_a_stand_in():
    # A pass-through here once existed only so tests could patch it; patching pre.train must still reach
    # the calls precompute makes, and an unpatched pre.train is the engine `lowdim train` runs.
    assert pre.train is lowdim_sd.train.train
