"""The contract's rounding bound (``lowdim.testing.rounding``) lets a correct space through on the cases a fixed
tolerance failed (review BZ, finding 1: LiDB's fp32 gradients; a stack's fp16 output), and still fails what a
wrong space computes: a missing scale, a transposed update."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lowdim
from lowdim.spaces.base import LayerSpec
from lowdim.testing.contract_cases import (
    LIDB_FP32_ROUNDING,
    REGISTRY,
    SPACES,
    STACK_HALF_ROUNDING,
    Injected,
    cases,
    close,
    through,
)
from lowdim.testing.references import reference_delta
from lowdim.testing.rounding import HALF_UNITS, UNITS, units_off


def square_loss(y: torch.Tensor) -> torch.Tensor:
    return y.square().sum()


def worst_units(got, exact, dtype) -> float:
    """The largest of the output's and every gradient's distance, in rounding units."""
    offs = [units_off(got.value, exact.value, exact.value_spread, dtype)]
    offs += [units_off(got.grads[layer][k], exact.grads[layer][k], exact.grad_spreads[layer][k], dtype)
             for layer in exact.grads for k in exact.grads[layer]]
    return max(offs)


def test_on_the_case_a_fixed_fp32_tolerance_failed_lowdims_gradients_are_within_rounding():
    with lowdim.use_registry(REGISTRY):
        run = Injected("lidb", LIDB_FP32_ROUNDING, 1.0, freeze=True)
        output = run.model(run.x)
        output.square().sum().backward()
        exact = run.exact(square_loss)
        leaves = {layer: {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
                  for layer, p in run.weights().items()}
        run.reference(run.x, leaves).square().sum().backward()  # the same math in fp32, summed in another order
    got, fp32 = run.weights()["0"]["B_train"].grad, leaves["0"]["B_train"].grad
    assert not close(got, fp32, torch.float32), (  # the two fp32 results differ by more than 1e-4 of the largest
        "LIDB_FP32_ROUNDING no longer draws the case a fixed tolerance failed (sample_config changed?): pick again")
    assert units_off(got, exact.grads["0"]["B_train"], exact.grad_spreads["0"]["B_train"], torch.float32) < 1
    assert units_off(output, exact.value, exact.value_spread, torch.float32) < 1


def test_on_the_case_a_bound_relative_to_the_output_failed_a_stacks_half_outputs_are_within_rounding():
    with lowdim.use_registry(REGISTRY):
        run = Injected("stack", {**STACK_HALF_ROUNDING, "dtype": torch.float16})
        exact = run.exact()
        run.adapters.merge("default")
        with torch.no_grad():  # evaluated, as a merged model is: no "unmerge it before training" warning
            output = run.model(run.x)
    off = float((output.double() - exact.value).abs().max())
    assert off > 32 * torch.finfo(torch.float16).eps * float(exact.value.abs().max()), (
        "STACK_HALF_ROUNDING no longer draws the case the relative bound failed (sample_config changed?): pick again")
    assert units_off(output, exact.value, exact.value_spread, torch.float16) < HALF_UNITS / 4


@pytest.mark.parametrize("space_name", SPACES)
@settings(max_examples=10, deadline=None)
@given(case=cases(), scale=st.sampled_from([0.5, -2.0]))
def test_a_missing_scale_is_far_outside_the_bound(space_name, case, scale):
    with lowdim.use_registry(REGISTRY):
        run = Injected(space_name, case, scale)
        exact = run.exact(square_loss)
        run.scale = 1.0  # what a space or a layer that ignores the scale computes
        assert worst_units(run.exact(square_loss), exact, case["dtype"]) > 10 * UNITS


@pytest.mark.parametrize("space_name", SPACES)
@settings(max_examples=10, deadline=None)
@given(case=cases(), size=st.integers(2, 24))
def test_a_transposed_update_is_far_outside_the_bound(space_name, case, size):
    with lowdim.use_registry(REGISTRY):
        run = Injected(space_name, {**case, "layer": LayerSpec(case["layer"].name, size, size)})
        exact = run.exact()
        slots = run.adapters.slots("default")
        transposed = {name: reference_delta(slot.space, {k: v.double() for k, v in slot.params.items()},
                                            slot.buffers_dict()).T for name, slot in slots.items()}
    output = through({k: v.double() for k, v in run.base.items()}, transposed, run.scale, run.x.double())
    assert units_off(output, exact.value, exact.value_spread, case["dtype"]) > 10 * UNITS


def test_a_gap_of_another_shape_or_not_a_number_is_never_rounding():
    exact, spread = torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    assert units_off(torch.ones(3), exact, spread, torch.float32) == 0
    assert units_off(torch.ones(4), exact, spread, torch.float32) == float("inf")
    assert not units_off(torch.tensor([1.0, float("nan"), 1.0]), exact, spread, torch.float32) <= UNITS
    assert units_off(1 + torch.full((3,), 2.0**-20), exact, spread, torch.float32) == pytest.approx(8)
