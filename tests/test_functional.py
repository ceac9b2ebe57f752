"""lowdim.functional's in-place update: what every adapted linear layer's forward computes."""

from __future__ import annotations

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lowdim import functional as F


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 9), in_features=st.integers(1, 12),
       out_features=st.integers(1, 12), rank=st.integers(1, 4), scale=st.sampled_from([1.0, 0.5, -2.0, 0.0]),
       seed=st.integers(0, 2**31 - 1))
def test_the_in_place_update_is_the_dense_one_in_value_and_gradient(rows, in_features, out_features, rank, scale,
                                                                    seed):
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(True)

    x, base = draw(rows, in_features), draw(rows, out_features)
    down, up = draw(rank, in_features), draw(out_features, rank)
    fused = F.lowrank_add_(base * 1.0, x, down, up, scale)  # in place into a layer's output, not a leaf
    dense = base + scale * x @ (up @ down).T  # x @ ΔW.T with ΔW = up @ down
    assert fused.shape == dense.shape
    torch.testing.assert_close(fused, dense)
    weights = torch.randn(dense.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((fused * weights).sum(), (base, x, down, up))
    expected = torch.autograd.grad((dense * weights).sum(), (base, x, down, up))
    for got, wanted in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, wanted)


DTYPES = st.sampled_from([torch.float32, torch.bfloat16, torch.float16, torch.float64])


@settings(max_examples=60, deadline=None)
@given(x_dtype=DTYPES, result_dtype=DTYPES, down_dtype=DTYPES, up_dtype=DTYPES, seed=st.integers(0, 2**31 - 1))
def test_mixed_dtypes_compute_in_the_inputs_then_the_outputs_dtype(x_dtype, result_dtype, down_dtype, up_dtype, seed):
    # The factors may come cast (the forward's case) or not, and under autocast the base's output can be in
    # another dtype than the input: the down product is in x's dtype, the up product in the output's.
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 6, generator=generator).to(x_dtype)
    result = torch.randn(5, 7, generator=generator).to(result_dtype)
    down = torch.randn(3, 6, generator=generator).to(down_dtype)
    up = torch.randn(7, 3, generator=generator).to(up_dtype)
    hidden = (x @ down.to(x_dtype).T).to(result_dtype)
    expected = result.clone().addmm_(hidden, up.to(result_dtype).T, alpha=0.5)
    got = F.lowrank_add_(result.clone(), x, down, up, 0.5)
    assert got.dtype == result_dtype
    assert torch.equal(got, expected)


def _orthonormal_columns(rows: int, columns: int, generator: torch.Generator) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(rows, columns, generator=generator, dtype=torch.float64))[0]


@settings(max_examples=40, deadline=None)
@given(out_features=st.integers(1, 16), in_features=st.integers(1, 16), rank=st.integers(1, 8),
       negligible=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_numerical_rank_counts_the_directions_of_full_rank_factors(out_features, in_features, rank, negligible,
                                                                   seed):
    # up @ down with up = U·diag(s), down = Vᵀ (U, V orthonormal): its singular values are exactly s.
    generator = torch.Generator().manual_seed(seed)
    width = min(rank, out_features, in_features)
    values = 1.0 + 9.0 * torch.rand(width, generator=generator, dtype=torch.float64)
    expected = width
    if negligible and width > 1:  # a direction below rtol (1e-6) times the largest is no direction
        values[-1], expected = 1e-9 * values.max(), width - 1
    up = _orthonormal_columns(out_features, width, generator) * values
    down = _orthonormal_columns(in_features, width, generator).T
    assert F.numerical_rank(up @ down) == expected
    assert F.numerical_rank((up @ down).float()) == expected  # any dtype: it counts in float64
    assert F.numerical_rank(torch.zeros(out_features, in_features)) == 0


@settings(max_examples=25, deadline=None)
@given(size=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_numerical_rank_counts_values_strictly_above_the_tolerance(size, seed):
    # rtol=1 keeps no value (the largest is not above itself), so a caller can ask "any direction beyond the
    # largest?" and get 0; the equal singular values of a scaled orthonormal matrix are all kept below it.
    generator = torch.Generator().manual_seed(seed)
    matrix = 3.0 * _orthonormal_columns(size, size, generator)
    assert F.numerical_rank(matrix, rtol=1.0) == 0
    assert F.numerical_rank(matrix, rtol=1.0 - 1e-9) == size

@settings(deadline=None)  # an SVD per example: a loaded machine can take longer than hypothesis' 200 ms
@given(st.lists(st.floats(-12, 0), min_size=1, max_size=6), st.floats(-10, -1), st.integers(0, 2**16))
def test_numerical_rank_counts_the_singular_values_above_rtol_times_the_largest(log_values, log_rtol, seed):
    """Review CJ 1: the contract's rank bound reads ``rtol``; a matrix of chosen singular values, rotated."""
    values = torch.tensor([10.0 ** v for v in log_values], dtype=torch.float64)
    rtol = 10.0 ** log_rtol
    assume(all(abs(v / values.max() - rtol) > 1e-3 * rtol for v in values))  # none on the threshold itself
    generator = torch.Generator().manual_seed(seed)
    size = len(values)
    left, _ = torch.linalg.qr(torch.randn(size + 2, size, dtype=torch.float64, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(size + 3, size, dtype=torch.float64, generator=generator))
    matrix = left @ torch.diag(values) @ right.T
    assert F.numerical_rank(matrix, rtol=rtol) == int((values > rtol * values.max()).sum())
