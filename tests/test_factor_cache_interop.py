"""The factors a no_grad call keeps (lowdim/injection/factor_cache.py) next to torch's other ways of running a model.

An autocast call must not leave bf16-rounded factors for later fp32 calls; a ``torch.jit.trace`` made under
no_grad must record the factor products, not bake the kept factors in as constants; and a compiled model must
not compile again for each adapter scale (a strength slider, ``-a file:0.8``, a per-step schedule).
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim


def lidb_model(seed: int, width: int, rank: int) -> tuple[nn.Module, lowdim.Adapters]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
    model.requires_grad_(False)
    space = lowdim.get_space("lidb", a=4, b=4, rank=rank, init="gaussian")
    return model, lowdim.inject(model, space, ["0", "2"], seed=seed)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), width=st.integers(4, 24), rank=st.integers(1, 2), rows=st.integers(1, 5))
def test_an_autocast_call_leaves_later_fp32_calls_as_they_were(seed, width, rank, rows):
    model, _ = lidb_model(seed, width, rank)
    untouched = copy.deepcopy(model)  # its cache is filled by fp32 calls only
    x = torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        model(x)  # fills the cache
        for adapted in (model, untouched):  # a training step: the next call makes the factors again
            for param in lowdim.Adapters(adapted).parameters():
                param.add_(0.25)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)  # e.g. a bf16 preview, the first call after the step
        after = model(x)
        reference = untouched(x)
        assert torch.equal(model(x), reference)  # and every later one
    assert torch.equal(after, reference)


def test_a_no_grad_trace_follows_the_adapter_params_and_passes_its_own_check():
    model, adapters = lidb_model(seed=0, width=16, rank=1)
    x = torch.randn(4, 16)
    with torch.no_grad():
        model(x)  # a warm cache, as after any inference call
        traced = torch.jit.trace(model, x)  # check_trace runs it again: kept factors as constants differed
        for param in adapters.parameters():
            param.mul_(3)
        assert torch.allclose(traced(x), model(x), atol=1e-6)


def test_a_fresh_no_grad_trace_passes_its_check():
    model, _ = lidb_model(seed=1, width=16, rank=1)
    with torch.no_grad():
        torch.jit.trace(model, torch.randn(4, 16))


@pytest.mark.parametrize("space_name", ["lora", "lidb"])
def test_a_compiled_model_compiles_once_for_every_adapter_scale(space_name):
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    model.requires_grad_(False)
    config = dict(rank=2, init="gaussian") if space_name == "lora" else dict(a=4, b=4, rank=1, init="gaussian")
    adapters = lowdim.inject(model, lowdim.get_space(space_name, **config), ["0", "2"], seed=1)
    counter = CompileCounter()
    compiled = torch.compile(model, fullgraph=True, backend=counter)
    x = torch.randn(3, 8)
    for scale in (1.0, 0.8, -0.5, 2.0):
        adapters.set_scale("default", scale)
        with torch.no_grad():
            assert torch.allclose(compiled(x), model(x), atol=1e-6)
    assert counter.frame_count == 1
