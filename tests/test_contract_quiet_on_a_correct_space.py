"""The shared contract suite warns nothing on a correct space (review DI, finding 5): its own forwards on a merged
adapter run as an evaluation does, so lowdim's "adapter 'default' is merged ... unmerge it before training" (a
forward of a merged adapter with grad on, in training mode) never reaches a plugin author's run of it."""

from __future__ import annotations

import inspect
import warnings

import pytest

import lowdim
from lowdim.testing import space_contract as suite

# Each property of the suite that takes a space: the fresh-process one runs in a child process, whose warnings
# never reach this one, and the plugin load checks take no space.
PROPERTIES = [name for name in suite.__all__ if name.startswith("test_")
              and "space_name" in inspect.signature(getattr(suite, name)).parameters
              and name != "test_make_buffers_gives_the_same_tensors_in_a_fresh_process"]


@pytest.mark.slow
@pytest.mark.parametrize("space_name", ["lora", "lidb"])
@pytest.mark.parametrize("name", PROPERTIES)
def test_the_suite_warns_nothing_on_a_correct_space(name, space_name, tmp_path_factory):
    prop = getattr(suite, name)
    extra = {"tmp_path_factory": tmp_path_factory} if "tmp_path_factory" in inspect.signature(prop).parameters else {}
    with lowdim.use_registry(suite.REGISTRY), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prop(space_name=space_name, **extra)
    said = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    assert said == [], f"{name}[{space_name}] warned: {said}"


def test_every_merging_property_is_checked():
    assert {"test_merge_and_unmerge_are_idempotent_and_keep_the_spaces_output",
            "test_in_half_precision_the_adapter_trains_merges_and_unmerges_within_rounding",
            "test_disable_gives_the_plain_model_and_enable_brings_the_adapter_back",
            "test_merge_and_unload_leaves_a_plain_model_that_computes_the_spaces_output"} <= set(PROPERTIES)
