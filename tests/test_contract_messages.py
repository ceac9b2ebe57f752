"""A plugin space's mistakes fail the shared contract, and `lowdim.inject`, with a message saying what the space
did wrong (review H, H3-H5): a default init with ΔW ≠ 0 is its own failure, never a hypothesis "FlakyFailure" of
an unrelated property; an init that ignores its generator, factors that drop the batch dimension and an option
without help text are named."""

from __future__ import annotations

import textwrap
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
import torch
from test_contract_for_plugins import contract_run, outcomes_in
from test_plugins import ScalarConfig, ScalarSpace, plugin_module

import lowdim
from lowdim import plugins
from lowdim.errors import LowdimError
from lowdim.injection.space_checks import check_batched_factors

SLIPS = textwrap.dedent('''
    from dataclasses import dataclass

    import torch

    from lowdim import Space, SpaceConfig, option
    from lowdim.hookspecs import hookimpl


    @dataclass
    class GateConfig(SpaceConfig):
        rank: int = option(2, "Width r of the update.")


    class Gated(Space):
        """ΔW = up · diag(s) · diag(g) · down: down and up frozen, the scales s and gates g trained."""

        name = "gated"
        config_class = GateConfig

        def param_shapes(self, layer):
            return {"s": (self.config.rank,), "g": (self.config.rank,)}

        def init_params(self, layer, generator):
            return {"s": torch.zeros(self.config.rank), "g": torch.randn(self.config.rank, generator=generator)}

        def make_buffers(self, layer, seed):
            generator = torch.Generator().manual_seed(seed)
            return {"down": torch.randn(self.config.rank, layer.in_features, generator=generator, dtype=torch.float64),
                    "up": torch.randn(layer.out_features, self.config.rank, generator=generator, dtype=torch.float64)}

        def factors(self, params, buffers):
            s = params["s"] * params["g"]  # (..., r)
            down = buffers["down"].to(s.dtype) * s[..., :, None]
            up = buffers["up"].to(s.dtype)
            return down, up.expand(*down.shape[:-2], *up.shape)


    class StartsOn(Gated):
        """The same space whose scales start at 1: ΔW ≠ 0 before any training."""

        name = "gated-starts-on"

        def init_params(self, layer, generator):
            return {"s": torch.ones(self.config.rank), "g": torch.ones(self.config.rank)}


    class GlobalRng(Gated):
        """The same space whose gates come from the global RNG, not the generator it is given."""

        name = "gated-global-rng"

        def init_params(self, layer, generator):
            return {"s": torch.zeros(self.config.rank), "g": torch.randn(self.config.rank)}


    class DropsBatch(Gated):
        """The same space whose factors give a batch of adapters the first one's factors, unbatched."""

        name = "gated-drops-batch"

        def factors(self, params, buffers):
            down, up = super().factors(params, buffers)
            return down.reshape(-1, *down.shape[-2:])[0], up.reshape(-1, *up.shape[-2:])[0]


    @hookimpl
    def register_spaces(register):
        for space in (Gated, StartsOn, GlobalRng, DropsBatch):
            register(space)
''')


def failures(report) -> dict[str, str]:
    """test id -> the text of its failure, from a JUnit report."""
    return {case.get("name"): " ".join(child.get("message", "") + (child.text or "") for child in case)
            for case in ET.parse(report).iter("testcase")}


# The checks asserted on below, on each space of SLIPS; they run in the contract run this module shares with
# tests/test_contract_for_plugins.py and tests/test_contract_culprits.py.
CHOSEN = "gated and (stacks_layers or default_init or zero_update or shapes_counts or leading_batch)"


@pytest.mark.slow
def test_the_contract_names_a_nonzero_init_an_init_ignoring_its_generator_and_factors_dropping_the_batch(
        tmp_path_factory):
    report = contract_run(tmp_path_factory)  # gated_slips's spaces, SLIPS, are installed there
    outcomes = outcomes_in(report)
    assert set(outcomes["gated"].values()) == {"passed"}, outcomes["gated"]
    assert len(outcomes["gated"]) == 5, outcomes["gated"]
    said = {test: text for test, text in failures(report).items() if "[gated" in test}  # this module's spaces
    assert "Flaky" not in " ".join(said.values())
    on = outcomes["gated-starts-on"]
    assert on["test_a_space_that_stacks_layers_gives_each_stacked_layer_its_own_factors"] == "passed"
    assert on["test_a_fresh_adapter_gives_a_zero_update"] == "failed"
    assert "its default init gives ΔW ≠ 0" in said["test_a_fresh_adapter_gives_a_zero_update[gated-starts-on]"]
    assert on["test_default_init_leaves_model_output_unchanged"] == "failed"
    assert "ΔW = 0" in said["test_default_init_leaves_model_output_unchanged[gated-starts-on]"]
    rng = outcomes["gated-global-rng"]
    assert rng["test_shapes_counts_and_reproducible_init"] == "failed"
    assert "init_params gave different tensors for the same generator seed" in \
        said["test_shapes_counts_and_reproducible_init[gated-global-rng]"]
    dropped = said["test_factors_keep_a_leading_batch_dimension[gated-drops-batch]"]
    assert outcomes["gated-drops-batch"]["test_factors_keep_a_leading_batch_dimension"] == "failed"
    assert "factors on a batch of 2 adapters gave down" in dropped and "keep the leading batch dimension" in dropped


class DropsTheBatch(ScalarSpace):
    """factors on a batch of K adapters gives one adapter's factors: the first's."""

    name = "drops-batch"

    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return down, up.reshape(-1, *up.shape[-2:])[0]


def first_layer_tensors(space) -> tuple:
    layer = lowdim.LayerSpec("blk.q", 3, 4)
    return layer, space.init_params(layer, torch.Generator().manual_seed(0)), space.make_buffers(layer, 1)


def test_factors_that_drop_the_batch_dimension_are_named_by_the_batching_check():
    space = DropsTheBatch()
    with pytest.raises(LowdimError) as raised:
        check_batched_factors(space, *first_layer_tensors(space))
    said = str(raised.value)
    assert said.startswith("space 'drops-batch' on layer blk.q (3x4): factors on a batch of 2 adapters gave down "
                           "(1, 4) and up (3, 1) instead of 2 stacked factors (2, 1, 4) and (2, 3, 1)")
    assert "keep the leading batch dimension" in said


def test_every_installed_space_passes_the_batching_check():
    registry = lowdim.Registry.from_plugins(load_entry_points=True)
    for name in registry.spaces:
        space = registry.make_space(name)
        check_batched_factors(space, *first_layer_tensors(space))


@dataclass
class NoHelpConfig(ScalarConfig):
    width: float = 1.0  # a plain dataclass default: no help text for `lowdim spaces -v`


class NoHelp(ScalarSpace):
    name = "no-help"
    config_class = NoHelpConfig


def test_an_option_without_help_text_is_a_warning_naming_it_and_the_fix():
    module = plugin_module("nohelp", register_spaces=lambda register: register(NoHelp))
    with pytest.warns(plugins.PluginWarning) as caught:
        registry = lowdim.Registry.from_plugins(["lowdim.spaces.builtin", module])
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "option 'width' of NoHelpConfig has no help text" in said[0]
    assert "space 'no-help'" in said[0] and "lowdim.option(" in said[0]
    assert "no-help" in registry.spaces  # it works; only its help is blank


def test_every_installed_space_gives_each_option_help_text():
    with warnings.catch_warnings():
        warnings.simplefilter("error", plugins.PluginWarning)
        registry = lowdim.Registry.from_plugins(load_entry_points=True)
    for name, entry in registry.spaces.items():
        blank = [option for option, text in entry.value.config_class.help().items() if not text.strip()]
        assert not blank, f"space '{name}': options without help: {blank}"
    assert torch is not None
