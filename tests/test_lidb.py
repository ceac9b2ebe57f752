"""LiDB (paper §4.1): the equation itself, its frozen bases, clamping, and validation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lowdim
from lowdim import functional as F
from lowdim.errors import ConfigError
from lowdim.spaces import LayerSpec, LidbSpace

FAST = settings(max_examples=30, deadline=None)
dims = st.integers(1, 40)


@FAST
@given(out_features=dims, in_features=dims, a=st.integers(1, 45), b=st.integers(1, 45), seed=st.integers(0, 2**40),
       aux_scale=st.sampled_from([1.0, 0.25, 4.0]))
def test_delta_is_the_papers_four_factor_product(out_features, in_features, a, b, seed, aux_scale):
    rank = 1
    space = LidbSpace(a=a, b=b, rank=rank, aux_scale=aux_scale)
    layer = LayerSpec("l", out_features, in_features)
    buffers = space.make_buffers(layer, seed)
    a_eff, b_eff = min(a, out_features), min(b, in_features)
    a_train = torch.randn(a_eff, rank, dtype=torch.float64)
    b_train = torch.randn(rank, b_eff, dtype=torch.float64)
    expected = buffers["A_aux"] @ a_train @ b_train @ buffers["B_aux"]
    delta = space.delta({"A_train": a_train, "B_train": b_train}, buffers)
    assert torch.allclose(delta, expected, atol=1e-12)
    assert buffers["A_aux"].shape == (out_features, a_eff)
    assert buffers["B_aux"].shape == (b_eff, in_features)


@FAST
@given(out_features=dims, in_features=dims, seed=st.integers(0, 2**40), aux_scale=st.floats(0.1, 10))
def test_aux_bases_are_orthonormal_with_configured_magnitude(out_features, in_features, seed, aux_scale):
    space = LidbSpace(a=30, b=20, aux_scale=aux_scale)
    buffers = space.make_buffers(LayerSpec("l", out_features, in_features), seed)
    a_aux, b_aux = buffers["A_aux"], buffers["B_aux"]
    eye_a = torch.eye(a_aux.shape[1], dtype=torch.float64) * aux_scale**2
    eye_b = torch.eye(b_aux.shape[0], dtype=torch.float64) * aux_scale**2
    assert torch.allclose(a_aux.T @ a_aux, eye_a, atol=1e-9 * aux_scale**2)  # columns of A_aux
    assert torch.allclose(b_aux @ b_aux.T, eye_b, atol=1e-9 * aux_scale**2)  # rows of B_aux


@FAST
@given(seed=st.integers(0, 2**40), name=st.text(min_size=1, max_size=30), other=st.text(min_size=1, max_size=30))
def test_bases_depend_only_on_seed_and_layer_name(seed, name, other):
    space = LidbSpace(a=6, b=5)

    def bases(layer_name: str, adapter_seed: int = seed):
        return space.make_buffers(LayerSpec(layer_name, 12, 10), F.layer_seed(adapter_seed, layer_name))

    first, again = bases(name), bases(name)
    assert all(torch.equal(first[k], again[k]) for k in first)
    if other != name:
        assert not torch.allclose(first["A_aux"], bases(other)["A_aux"])
    assert not torch.allclose(first["A_aux"], bases(name, seed + 1)["A_aux"])


def test_sign_fixed_qr_is_independent_of_column_signs():
    generator = torch.Generator().manual_seed(7)
    q = F.orthonormal_columns(9, 4, generator)
    r = q.T @ torch.randn(9, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    # R = Q^T G must have a positive diagonal: the sign convention that makes Q unique.
    assert (torch.diagonal(r) > 0).all()


def test_default_widths_and_parameter_count_match_the_paper():
    space = LidbSpace()
    assert (space.config.a, space.config.b, space.config.rank) == (100, 50, 1)
    assert space.num_params(LayerSpec("unet.attn1.to_q", 320, 320)) == 150


def test_widths_larger_than_the_layer_are_clamped_with_a_note():
    space = LidbSpace(a=100, b=50)
    layer = LayerSpec("small", 64, 32)
    assert space.param_shapes(layer) == {"A_train": (64, 1), "B_train": (1, 32)}
    assert "clamped to a=64, b=32" in space.describe(layer)
    assert space.describe(LayerSpec("big", 320, 768)) is None


@pytest.mark.parametrize(("options", "message"), [
    ({"a": 1, "rank": 2}, r"^lidb: a \(1\) must be >= rank \(2\)$"),
    ({"b": 1, "rank": 3}, r"^lidb: b \(1\) must be >= rank \(3\)$"),
    ({"a": 0}, r"^lidb: a must be an integer >= 1, got 0$"),
    ({"rank": 0}, r"^lidb: rank must be an integer >= 1, got 0$"),
    ({"aux_scale": -1.0}, r"^lidb: aux_scale must be > 0, got -1\.0$"),
    ({"init": "ones"}, r"^lidb: init must be one of zero, gaussian, got 'ones'$"),
    ({"c": 3}, r"^unknown option\(s\) c for space 'lidb'; known: a, aux_scale, b, init, init_std, rank$"),
])
def test_invalid_configs_name_the_value(options, message):
    with pytest.raises(ConfigError, match=message):
        LidbSpace(**options)


def test_rank_larger_than_a_tiny_layer_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="tiny.proj"):
        LidbSpace(a=4, b=4, rank=3).param_shapes(LayerSpec("tiny.proj", 2, 8))


def test_zero_init_trains_a_train_from_zero_with_nonzero_gradient():
    model = torch.nn.Sequential(torch.nn.Linear(20, 30))
    adapters = lowdim.inject(model, LidbSpace(a=10, b=8), ["re:.*"], seed=0)
    assert adapters.tensors("default")["0"]["A_train"].abs().sum() == 0
    model(torch.randn(5, 20)).pow(2).sum().backward()
    a_train = adapters.slots("default")["0"].params["A_train"]
    assert a_train.grad is not None and a_train.grad.abs().sum() > 0


@settings(max_examples=20, deadline=None)
@given(out=st.integers(2, 40), inp=st.integers(2, 40), seed=st.integers(0, 2**31 - 1))
def test_cached_bases_are_the_seeded_draw_and_callers_cannot_change_them(out, inp, seed):
    from lowdim.spaces.lidb import _bases

    space = lowdim.get_space("lidb", a=min(out, 3), b=min(inp, 2), aux_scale=2.0)
    layer = LayerSpec("layer", out, inp)
    first = space.make_buffers(layer, seed)
    fresh_a, fresh_b = _bases.__wrapped__(out, inp, min(out, 3), min(inp, 2), seed)  # no cache
    torch.testing.assert_close(first["A_aux"], fresh_a * 2.0, rtol=0, atol=0)
    torch.testing.assert_close(first["B_aux"], fresh_b * 2.0, rtol=0, atol=0)
    first["A_aux"].zero_()  # a caller's tensor is its own
    torch.testing.assert_close(space.make_buffers(layer, seed)["A_aux"], fresh_a * 2.0, rtol=0, atol=0)
