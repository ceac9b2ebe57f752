"""Input dropout on adapters (peft's lora_dropout): the update's input only, training mode only."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError, LowdimError

SPACES = st.sampled_from([("lora", {"rank": 2}), ("lidb", {"a": 4, "b": 3, "rank": 1})])
KINDS = st.sampled_from(["linear", "conv", "per-sample"])


class Net(nn.Module):
    """One linear layer (the row path), one 1x1 conv (the other path) and an embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 5, dtype=torch.float64)
        self.mix = nn.Conv2d(6, 5, kernel_size=1, dtype=torch.float64)
        self.table = nn.Embedding(7, 6, dtype=torch.float64)


def build(space_name: str, options: dict, kind: str, dropout: float, seed: int = 0) -> tuple[Net, lowdim.Adapters]:
    """A frozen net with one adapter of random (non-zero) params on the layer ``kind`` names."""
    torch.manual_seed(seed)
    net = Net().requires_grad_(False)
    target = "mix" if kind == "conv" else "proj"
    adapters = lowdim.inject(net, lowdim.get_space(space_name, **options), [target], seed=seed,
                             batch=2 if kind == "per-sample" else None, dropout=dropout)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in adapters.parameters():
            param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.5)
    adapters.set_scale("default", 0.7)
    return net, adapters


def call(net: Net, kind: str, x: torch.Tensor) -> torch.Tensor:
    return net.mix(x) if kind == "conv" else net.proj(x)


def sample_input(kind: str, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (4, 6, 3, 2) if kind == "conv" else (4, 3, 6)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def manual(net: Net, adapters: lowdim.Adapters, kind: str, x: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
    """base(x) + scale · (dropped @ ΔWᵀ), per sample j with adapter j % B, written out apart from the layer."""
    slot = next(iter(adapters.slots().values()))
    down, up = (factor.double() for factor in slot.space.factors(slot.tensors(), slot.buffers_dict()))
    base = net.mix.base_layer(x) if kind == "conv" else net.proj.base_layer(x)
    if kind == "conv":
        update = torch.einsum("oi,nihw->nohw", up @ down, dropped)
    elif kind == "per-sample":
        deltas = (up @ down)[torch.arange(len(x)) % up.shape[0]]  # (N, out, in)
        update = torch.einsum("noi,nli->nlo", deltas, dropped)
    else:
        update = dropped @ (up @ down).T
    return base + slot.scale * update


@settings(max_examples=25, deadline=None)
@given(space=SPACES, kind=KINDS, p=st.floats(0.05, 0.95), seed=st.integers(0, 2**31 - 1))
def test_training_drops_the_updates_input_and_leaves_the_base_alone(space, kind, p, seed):
    net, adapters = build(*space, kind, p)
    x = sample_input(kind, seed)
    net.train()
    torch.manual_seed(seed)
    out = call(net, kind, x)
    torch.manual_seed(seed)  # the mask the layer drew: one dropout of its input, in the layer's row layout
    rows = x if kind == "conv" else x.reshape(-1, x.shape[-1])
    dropped = nn.functional.dropout(rows, p, training=True).reshape(x.shape)
    assume(dropped.count_nonzero() > 0)  # an all-zero input would leave no gradient to compare
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    expected = manual(net, adapters, kind, x, dropped)
    torch.testing.assert_close(out, expected)
    # The same gradients as the written-out computation: they flow through the dropped input only.
    params = adapters.parameters()
    got = torch.autograd.grad((out * weights).sum(), params)
    wanted = torch.autograd.grad((manual(net, adapters, kind, x, dropped) * weights).sum(), params)
    for grad, reference in zip(got, wanted, strict=True):
        assert grad.abs().sum() > 0
        torch.testing.assert_close(grad, reference)


@settings(max_examples=20, deadline=None)
@given(space=SPACES, kind=KINDS, p=st.floats(0.05, 0.95), seed=st.integers(0, 2**31 - 1))
def test_eval_mode_and_p_zero_are_bit_identical_to_no_dropout_and_draw_nothing(space, kind, p, seed):
    plain, _ = build(*space, kind, 0.0)
    dropping, _ = build(*space, kind, p)
    x = sample_input(kind, seed)
    for mode in (True, False):  # p = 0 in both modes; p > 0 in eval mode
        plain.train(mode)
        dropping.train(False)
        state = torch.get_rng_state()
        assert torch.equal(call(plain, kind, x), call(dropping, kind, x))
        assert torch.equal(torch.get_rng_state(), state)  # no mask was drawn


def test_near_p_one_most_tokens_get_the_base_output_exactly_and_none_in_eval_mode():
    # A token whose every input is dropped gets no update at all; the base still sees the whole input.
    net, _ = build("lora", {"rank": 2}, "linear", 0.99)
    x = sample_input("linear", 1)
    base = net.proj.base_layer(x)
    net.train()
    torch.manual_seed(0)
    untouched = (net.proj(x) - base).abs().amax(-1) < 1e-12
    assert untouched.sum() >= untouched.numel() // 2
    net.eval()
    assert not ((net.proj(x) - base).abs().amax(-1) < 1e-12).any()


def test_merged_adapters_and_embeddings_draw_no_mask():
    net, adapters = build("lora", {"rank": 2}, "linear", 0.5)
    ids = torch.tensor([[0, 3, 6]])
    table = lowdim.inject(net, lowdim.get_space("lora", rank=2), lowdim.LayerSet("t", ("table",), types=("embedding",)),
                          name="words", dropout=0.5)
    with torch.no_grad():
        for param in table.parameters("words"):
            param.normal_()
    net.eval()
    x = sample_input("linear", 2)
    looked_up, before = net.table(ids), net.proj(x)
    adapters.merge()
    net.train()
    state = torch.get_rng_state()
    assert torch.equal(net.table(ids), looked_up)  # token ids are no features to drop
    with torch.no_grad():  # still training mode, where dropout would draw; no grad, as evaluating a merge runs
        torch.testing.assert_close(net.proj(x), before)  # folded into the weight: nothing left to drop
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, math.nan, "0.1", True, None])
def test_a_dropout_outside_zero_to_one_is_one_line_naming_it_and_changes_nothing(bad):
    net = Net()
    with pytest.raises(LowdimError) as error:
        lowdim.inject(net, lowdim.get_space("lora"), ["proj"], dropout=bad)
    message = str(error.value)
    assert "\n" not in message and "dropout must be a number in [0, 1)" in message and repr(bad) in message
    assert isinstance(net.proj, nn.Linear) and not lowdim.Adapters(net).names()


def test_files_record_the_dropout_and_a_load_applies_none(tmp_path):
    net, adapters = build("lidb", {"a": 4, "b": 3, "rank": 1}, "linear", 0.25)
    path = lowdim.save_adapter(tmp_path / "a.safetensors", net)
    adapter = lowdim.read_adapter(path)
    assert adapter.metadata["dropout"] == "0.25" and adapter.dropout == 0.25
    fresh, _ = build("lidb", {"a": 4, "b": 3, "rank": 1}, "linear", 0.0, seed=5)
    lowdim.Adapters(fresh).delete()
    info = lowdim.load_adapter(path, fresh)
    assert info.metadata["dropout"] == 0.25  # a record of how it was trained
    assert info.dropout == 0.0 and all(slot.dropout == 0.0 for slot in lowdim.Adapters(fresh).slots().values())
    resaved = lowdim.read_adapter(lowdim.save_adapter(tmp_path / "again.safetensors", fresh))
    assert resaved.dropout == 0.25  # the record survives a load and a save, as base model and token do
    plain, _ = build("lidb", {"a": 4, "b": 3, "rank": 1}, "linear", 0.0)
    plain_path = lowdim.save_adapter(tmp_path / "b.safetensors", plain)
    assert "dropout" not in lowdim.read_adapter(plain_path).metadata  # files without it stay as they were
    for bad in ("1.0", "-0.5", "nan", "lots"):
        rewrite(path, dropout=bad)
        with pytest.raises(AdapterFileError, match=r"the dropout in the metadata is not a number in \[0, 1\)"):
            lowdim.read_adapter(path)


def test_rank_relaxation_gives_the_new_adapter_its_dropout():
    net, adapters = build("lidb", {"a": 4, "b": 3, "rank": 1}, "linear", 0.0)
    info = lowdim.relax_rank(adapters, "default", "relaxed", lowdim.get_space("lora", rank=2), dropout=0.3)
    assert info.dropout == 0.3 and all(slot.dropout == 0.3 for slot in adapters.slots("relaxed").values())


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_an_adapter_added_to_a_model_in_eval_mode_drops_nothing_until_it_trains(kind):
    """model.eval() before the inject (peft's layers take the mode they are put in): no dropout, no training
    forward; model.train() afterwards turns the dropout on as for an adapter injected first."""
    torch.manual_seed(0)
    net = Net().requires_grad_(False).eval()
    target = "mix" if kind == "conv" else "proj"
    adapters = lowdim.inject(net, lowdim.get_space("lora", rank=2, init="gaussian"), [target], dropout=0.9)
    adapters.add("second", lowdim.get_space("lora", rank=2, init="gaussian"), [target], dropout=0.9)
    layer = net.get_submodule(target)
    assert not layer.training and not any(module.training for module in layer.modules())
    x = torch.randn(4, 6, dtype=torch.float64) if kind == "linear" else torch.randn(1, 6, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(x), layer(x))  # the same every call: nothing dropped
    net.train()
    assert layer.training and not torch.equal(layer(x), layer(x))  # dropout on again
