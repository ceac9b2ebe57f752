"""A plugin space's own mistake is named, by `lowdim.inject` and by the shared contract suite, as the part of the
space that is wrong (review AG): a `delta` override that disagrees with `factors` fails its own check and no
forward/merge/override one, `factors` that give every sample of a batch the first adapter's values, an
`init_params` in float64, a `rank()` that is not the factors' width, and frozen state that changes from process to
process (`hash(layer.name)` in `make_buffers`) are each one line saying so."""

from __future__ import annotations

import textwrap

import pytest
import torch
from test_contract_for_plugins import contract_run, outcomes_in
from test_contract_messages import failures
from test_space_checks import UpOnly
from torch import nn

import lowdim
from lowdim.errors import LowdimError
from lowdim.injection.space_checks import check_batched_factors


class InitsInFloat64(UpOnly):
    def init_params(self, layer, generator):
        return {"up": torch.zeros(layer.out_features, self.config.rank, dtype=torch.float64)}


class RankOneTooWide(UpOnly):
    def rank(self, layer):
        return self.config.rank + 1


class FirstSampleForAll(UpOnly):
    """Shapes right, values wrong: every sample of a batch gets the first adapter's `up`."""

    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return down, up.reshape(-1, *up.shape[-2:])[0].expand(up.shape)


def two_linears() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 6))


def test_an_init_in_float64_is_refused_naming_the_space_the_param_and_the_layer():
    with pytest.raises(LowdimError) as raised:
        lowdim.inject(two_linears(), InitsInFloat64(), ["0", "2"])
    said = str(raised.value)
    assert "\n" not in said
    assert said.startswith("space 'up-only' on layer 0 (6x8): init_params gave up as torch.float64; "
                           "params must be float32")


def test_a_rank_that_is_not_the_factors_width_is_refused_with_both_numbers():
    with pytest.raises(LowdimError) as raised:
        lowdim.inject(two_linears(), RankOneTooWide(), ["0", "2"])
    assert str(raised.value).startswith("space 'up-only' on layer 0 (6x8): rank() says 3 but factors are 2 wide")


def test_factors_that_give_every_sample_the_first_adapters_values_are_named_by_the_batching_check():
    space, layer = FirstSampleForAll(), lowdim.LayerSpec("blk.q", 6, 8)
    params, buffers = space.init_params(layer, torch.Generator().manual_seed(0)), space.make_buffers(layer, 1)
    with pytest.raises(LowdimError) as raised:
        check_batched_factors(space, layer, params, buffers)  # the init's zeros and a random second adapter
    said = str(raised.value)
    assert said.startswith("space 'up-only' on layer blk.q (6x8): factors on a batch of 2 different adapters gave "
                           "sample 1 other factors than factors on sample 1 alone")
    assert "compute each sample from its own params" in said
    check_batched_factors(UpOnly(), layer, params, buffers)  # the correct space passes it



class PositiveGain(UpOnly):
    """Correct, batching included, but defined only for a positive gain: `up * sqrt(gain)`, gain made as ones."""

    name = "pos-gain"

    def param_shapes(self, layer):
        return {"up": (layer.out_features, self.config.rank), "gain": (self.config.rank,)}

    def init_params(self, layer, generator):
        return {"up": torch.zeros(layer.out_features, self.config.rank), "gain": torch.ones(self.config.rank)}

    def factors(self, params, buffers):
        up = params["up"] * params["gain"].sqrt()[..., None, :]
        return buffers["down"].to(up.dtype).expand(*up.shape[:-2], -1, -1), up


class NotFiniteOffItsInit(PositiveGain):
    """Finite at its init alone: `sqrt(1 - gain)` with gain made as ones is NaN for most gains near it."""

    def param_shapes(self, layer):
        return {"up": (layer.out_features, self.config.rank), "gain": (layer.out_features, self.config.rank)}

    def init_params(self, layer, generator):
        return {"up": torch.ones(layer.out_features, self.config.rank),
                "gain": torch.ones(layer.out_features, self.config.rank)}

    def factors(self, params, buffers):
        up = params["up"] * (1 - params["gain"]).sqrt()
        return buffers["down"].to(up.dtype).expand(*up.shape[:-2], -1, -1), up


class NotFiniteOffItsInitAndDropsTheBatch(NotFiniteOffItsInit):
    def factors(self, params, buffers):
        down, up = super().factors(params, buffers)
        return down.reshape(-1, down.shape[-1]), up.reshape(-1, up.shape[-1])


def layer_tensors(space):
    layer = lowdim.LayerSpec("blk.q", 6, 8)
    return layer, space.init_params(layer, torch.Generator().manual_seed(0)), space.make_buffers(layer, 1)


def test_a_correct_space_defined_only_for_positive_params_passes_the_batching_check():
    space = PositiveGain()
    check_batched_factors(space, *layer_tensors(space))  # a random second adapter gave sqrt(-x): a torch error


def test_a_second_sample_whose_factors_are_not_finite_is_compared_by_shape_alone():
    space = NotFiniteOffItsInit()
    check_batched_factors(space, *layer_tensors(space))  # no "other factors" from NaN != NaN, no torch error
    with pytest.raises(LowdimError, match=r"^space 'pos-gain' on layer blk.q \(6x8\): factors on a batch of 2 "
                                          r"adapters gave down \(4, 8\) and up \(12, 2\) instead of 2 stacked"):
        check_batched_factors(NotFiniteOffItsInitAndDropsTheBatch(), *layer_tensors(space))


SLIPS = textwrap.dedent('''
    from dataclasses import dataclass

    import torch

    from lowdim import Space, SpaceConfig, option
    from lowdim.hookspecs import hookimpl


    @dataclass
    class GainConfig(SpaceConfig):
        rank: int = option(2, "Width r of the frozen down-projection.")


    class Gain(Space):
        """ΔW = g · up · down: down frozen, up and a scalar gain g trained."""

        name = "gainy"
        config_class = GainConfig

        def param_shapes(self, layer):
            return {"up": (layer.out_features, self.config.rank), "gain": (1,)}

        def init_params(self, layer, generator):
            return {"up": torch.zeros(layer.out_features, self.config.rank), "gain": torch.ones(1)}

        def make_buffers(self, layer, seed):
            generator = torch.Generator().manual_seed(self.basis_seed(layer, seed))
            return {"down": torch.randn(self.config.rank, layer.in_features, generator=generator, dtype=torch.float64)}

        def basis_seed(self, layer, seed):
            return seed

        def gain(self, params):
            return params["gain"].unsqueeze(-1)

        def factors(self, params, buffers):
            up = params["up"] * self.gain(params)
            down = buffers["down"].to(up.dtype)
            return down.expand(*up.shape[:-2], *down.shape), up


    class DeltaOff(Gain):
        name = "gainy-delta"

        def delta(self, params, buffers):
            down, up = self.factors(params, buffers)
            return up @ down * 1.01


    class FirstGain(Gain):
        name = "gainy-batch"

        def gain(self, params):
            return params["gain"].reshape(-1)[0]


    class Float64Init(Gain):
        name = "gainy-f64"

        def init_params(self, layer, generator):
            return {k: v.double() for k, v in super().init_params(layer, generator).items()}


    class RankOff(Gain):
        name = "gainy-rank"

        def rank(self, layer):
            return self.config.rank + 1


    class HashSeed(Gain):
        name = "gainy-hash"

        def basis_seed(self, layer, seed):
            return seed + hash(layer.name) % 1000


    @hookimpl
    def register_spaces(register):
        for space in (Gain, DeltaOff, FirstGain, Float64Init, RankOff, HashSeed):
            register(space)
''')

# What a delta that disagrees with factors used to fail, with a bare `assert False`: none of them is wrong.
RIGHT_BUT_BLAMED = ["test_factors_and_delta_give_the_spaces_own_update_within_its_rank",
                    "test_forward_is_the_spaces_math_and_only_trainable_params_get_gradients",
                    "test_merge_and_unmerge_are_idempotent_and_keep_the_spaces_output",
                    "test_override_runs_the_wrapped_layers_on_given_tensors_per_sample",
                    "test_merge_and_unload_leaves_a_plain_model_that_computes_the_spaces_output",
                    "test_on_an_embedding_a_lookup_is_a_row_of_the_spaces_update"]
DELTA = "test_delta_is_the_product_of_the_factors"
SHAPES = "test_shapes_counts_and_reproducible_init"
BATCH = "test_factors_keep_a_leading_batch_dimension"
FACTORS = RIGHT_BUT_BLAMED[0]
PROCESS = "test_make_buffers_gives_the_same_tensors_in_a_fresh_process"


# The checks each slip fails, and those a wrong delta used to fail: a run of all of them takes minutes. (A bare
# "delta" would select every check of the gainy-delta space: -k matches the space's name too.) They run in the
# contract run this module shares with tests/test_contract_for_plugins.py and tests/test_contract_messages.py.
CHOSEN = ("(gainy-delta and (product_of or factors_and or forward or merge_and or override or embedding))"
          " or (gainy-batch and leading_batch) or (gainy-f64 and shapes_counts)"
          " or (gainy-rank and factors_and) or (gainy-hash and fresh_process)")


@pytest.mark.slow
def test_the_contract_names_the_part_of_the_space_that_is_wrong(tmp_path_factory):
    report = contract_run(tmp_path_factory)  # gainy_slips's spaces, SLIPS, are installed there
    outcomes, said = outcomes_in(report), failures(report)

    delta = outcomes["gainy-delta"]
    assert [test for test, outcome in delta.items() if outcome == "failed"] == [DELTA], delta
    assert all(delta[test] == "passed" for test in RIGHT_BUT_BLAMED)
    blamed = said[f"{DELTA}[gainy-delta]"]
    assert "space 'gainy-delta': delta() disagrees with up @ down of factors() by up to " in blamed
    assert "an override of delta must equal the factors' product" in blamed

    assert outcomes["gainy-batch"][BATCH] == "failed"
    assert "factors on a batch of 2 different adapters gave sample 1 other factors" in said[f"{BATCH}[gainy-batch]"]

    assert outcomes["gainy-f64"][SHAPES] == "failed"
    assert "init_params gave up as torch.float64, gain as torch.float64; params must be float32" in \
        said[f"{SHAPES}[gainy-f64]"]

    assert outcomes["gainy-rank"][FACTORS] == "failed"
    assert "rank() says 3 but factors are 2 wide" in said[f"{FACTORS}[gainy-rank]"]

    assert outcomes["gainy-hash"][PROCESS] == "failed"
    assert "make_buffers gave other tensors for the same seed in a fresh Python process" in \
        said[f"{PROCESS}[gainy-hash]"]
