"""Gradient checkpointing under ``Adapters.override``: the recomputation in the backward runs with the tensors
the forward ran with, so the gradients reaching them are those of the model without checkpointing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lowdim
from lowdim.injection.checkpointing import checkpointing_with_overrides


class Checkpointed(nn.Module):
    """Two blocks whose forwards go through ``checkpoint`` (as a diffusers UNet's do under checkpointing)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(2))
        self.checkpoint = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x) if self.checkpoint is None else self.checkpoint(block, x)
        return x


def model_and_predicted(width: int, batch: int, seed: int):
    torch.manual_seed(seed)
    model = Checkpointed(width).requires_grad_(False)
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["blocks.*.0"], seed=seed)
    predicted = {layer: {name: (torch.randn(batch, *value.shape) * 0.5).requires_grad_()
                         for name, value in slot.tensors().items()}
                 for layer, slot in adapters.slots("default").items()}
    return model, adapters, predicted


def gradients(model, adapters, predicted, x):
    with adapters.override("default", predicted):
        loss = model(x).pow(2).sum()
    loss.backward()  # after the override, as a training loop's backward comes after its forward
    grads = [tensor.grad.clone() for tensors in predicted.values() for tensor in tensors.values()]
    for tensors in predicted.values():
        for tensor in tensors.values():
            tensor.grad = None
    return grads


@settings(max_examples=20, deadline=None)
@given(width=st.integers(2, 6), batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_checkpointed_gradients_equal_the_plain_ones(width, batch, seed):
    model, adapters, predicted = model_and_predicted(width, batch, seed)
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(seed))
    plain = gradients(model, adapters, predicted, x)
    model.checkpoint = checkpointing_with_overrides(model)
    checkpointed = gradients(model, adapters, predicted, x)
    for one, other in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(one, other)


def test_torchs_own_checkpoint_loses_the_override():
    model, adapters, predicted = model_and_predicted(4, 2, 0)
    model.checkpoint = lambda function, *args: torch.utils.checkpoint.checkpoint(function, *args,
                                                                                  use_reentrant=False)
    with pytest.raises(torch.utils.checkpoint.CheckpointError):
        gradients(model, adapters, predicted, torch.randn(2, 4))


def test_the_override_outside_is_left_as_it_was():
    model, adapters, predicted = model_and_predicted(4, 1, 1)
    model.checkpoint = checkpointing_with_overrides(model)
    gradients(model, adapters, predicted, torch.randn(1, 4))
    assert all(slot.override is None for slot in adapters.slots("default").values())


def test_the_function_made_before_the_adapters_covers_them():
    torch.manual_seed(0)
    model = Checkpointed(4).requires_grad_(False)
    model.checkpoint = checkpointing_with_overrides(model)  # before inject, as a model's own set-up may make it
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["blocks.*.0"], seed=0)
    predicted = {layer: {name: (torch.randn(2, *value.shape) * 0.5).requires_grad_()
                         for name, value in slot.tensors().items()}
                 for layer, slot in adapters.slots("default").items()}
    checkpointed = gradients(model, adapters, predicted, torch.ones(2, 4))
    model.checkpoint = None
    plain = gradients(model, adapters, predicted, torch.ones(2, 4))
    for one, other in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(one, other)
