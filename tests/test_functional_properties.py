"""Properties of lowdim.functional's batched and stacked forms: per-sample factors act as a loop over samples,
concatenated factors add their updates, and the orthonormal bases LiDB freezes are orthonormal and reproducible."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lowdim import functional as F

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDS = st.integers(0, 2**31 - 1)


@SETTINGS
@given(batch=st.integers(1, 3), tiles=st.integers(1, 3), length=st.integers(1, 4), inp=st.integers(1, 7),
       out=st.integers(1, 7), rank=st.integers(1, 3), seed=SEEDS,
       dtype=st.sampled_from([torch.float32, torch.float64]), extra_dim=st.booleans())
def test_per_sample_factors_equal_a_loop_where_sample_j_uses_adapter_j_mod_b(batch, tiles, length, inp, out, rank,
                                                                              seed, dtype, extra_dim):
    """The layout classifier-free guidance makes ([uncond, cond] copies of a batch): each copy of sample j gets
    adapter j % B, and the result is x @ (up @ down).T sample by sample."""
    generator = torch.Generator().manual_seed(seed)
    lead = (tiles * batch, length, 2) if extra_dim else (tiles * batch, length)
    x = torch.randn(*lead, inp, generator=generator, dtype=dtype)
    down = torch.randn(batch, rank, inp, generator=generator, dtype=dtype)
    up = torch.randn(batch, out, rank, generator=generator, dtype=dtype)
    got = F.lowrank_apply(x, down, up)
    looped = torch.stack([F.lowrank_apply(x[j], down[j % batch], up[j % batch]) for j in range(len(x))])
    assert got.shape == looped.shape
    torch.testing.assert_close(got, looped)
    dense = torch.stack([x[j] @ (up[j % batch] @ down[j % batch]).T for j in range(len(x))])
    torch.testing.assert_close(got, dense)


@SETTINGS
@given(ranks=st.lists(st.integers(1, 4), min_size=1, max_size=4), inp=st.integers(1, 6), out=st.integers(1, 6),
       lead=st.sampled_from([(), (2,), (2, 3)]), seed=SEEDS)
def test_concatenated_factors_give_the_sum_of_the_updates(ranks, inp, out, lead, seed):
    """A stack of spaces is one LoRA of the summed rank whose update is the sum of its parts' updates."""
    generator = torch.Generator().manual_seed(seed)
    factors = [(torch.randn(*lead, r, inp, generator=generator, dtype=torch.float64),
                torch.randn(*lead, out, r, generator=generator, dtype=torch.float64)) for r in ranks]
    down, up = F.concat_factors(factors)
    assert down.shape == (*lead, sum(ranks), inp) and up.shape == (*lead, out, sum(ranks))
    torch.testing.assert_close(F.lowrank_delta(down, up), sum(u @ d for d, u in factors))


@SETTINGS
@given(rows=st.integers(1, 30), cols=st.integers(1, 30), seed=st.integers(0, 2**63 - 1))
def test_orthonormal_columns_are_orthonormal_and_the_same_from_the_same_seed(rows, cols, seed):
    if cols > rows:
        with pytest.raises(ValueError, match=f"{cols} orthonormal columns in dimension {rows}"):
            F.orthonormal_columns(rows, cols, torch.Generator().manual_seed(seed))
        return
    basis = F.orthonormal_columns(rows, cols, torch.Generator().manual_seed(seed))
    assert basis.shape == (rows, cols) and basis.dtype == torch.float64
    torch.testing.assert_close(basis.T @ basis, torch.eye(cols, dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.equal(basis, F.orthonormal_columns(rows, cols, torch.Generator().manual_seed(seed)))
