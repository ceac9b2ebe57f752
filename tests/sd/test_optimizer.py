"""The training engine's optimizer: torch's one-kernel (fused) update where it exists, with the same steps as
the one-parameter-at-a-time AdamW and SGD it replaces, also under loss scaling."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lowdim_sd.optim import make_optimizer, one_kernel_update
from lowdim_sd.train import TrainConfig


def parameters(seed: int, shapes: list[tuple[int, ...]]) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in shapes]


def train_steps(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, steps: int,
                scaler: torch.amp.GradScaler | None = None, overflow_at: int | None = None) -> None:
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = sum((p.sin() * (step + 1)).square().sum() for p in params)
        if step == overflow_at:
            loss = loss + params[0].flatten()[0] * float("inf")
        if scaler is None:
            loss.backward()
            optimizer.step()
            continue
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # as the engine does, to clip true gradients
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()


shapes = st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), shapes=shapes, name=st.sampled_from(["adamw", "sgd"]),
       learning_rate=st.floats(1e-4, 0.3), weight_decay=st.sampled_from([0.0, 1e-2, 0.1]))
def test_the_engines_optimizer_steps_as_the_one_parameter_at_a_time_one(seed, shapes, name, learning_rate,
                                                                         weight_decay):
    config = TrainConfig(optimizer=name, learning_rate=learning_rate, weight_decay=weight_decay)
    ours, reference = parameters(seed, shapes), parameters(seed, shapes)
    optimizer = make_optimizer(ours, config)
    assert optimizer.defaults["fused"] is True  # on this CPU: one kernel for all of them
    expected = (torch.optim.AdamW(reference, lr=learning_rate, weight_decay=weight_decay, foreach=False)
                if name == "adamw" else
                torch.optim.SGD(reference, lr=learning_rate, momentum=0.9, weight_decay=weight_decay, foreach=False))
    train_steps(ours, optimizer, 3)
    train_steps(reference, expected, 3)
    for mine, theirs in zip(ours, reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_with_loss_scaling_an_overflowing_step_is_skipped_and_the_scale_lowered():
    # fp16 autocast on a GPU scales the loss; the fused update must skip a step whose gradients overflowed
    # (as the unfused one does) and take the others with the unscaled, clipped gradients.
    ours, reference = parameters(0, [(4, 3), (3,)]), parameters(0, [(4, 3), (3,)])
    results = []
    made = {"ours": make_optimizer(ours, TrainConfig(learning_rate=0.05)),  # the engine's, fused on this CPU
            "reference": torch.optim.AdamW(reference, lr=0.05, weight_decay=0.0, foreach=False)}
    assert made["ours"].defaults["fused"] is True
    for params, optimizer in ((ours, made["ours"]), (reference, made["reference"])):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        before = [p.detach().clone() for p in params]
        train_steps(params, optimizer, 1, scaler, overflow_at=0)
        assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
        train_steps(params, optimizer, 2, scaler)
        results.append(scaler.get_scale())
    assert results == [2.0**9, 2.0**9]
    for mine, theirs in zip(ours, reference, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("params, expected", [
    ([torch.zeros(2, requires_grad=True), torch.zeros(3, 2, requires_grad=True)], True),
    ([torch.zeros(2, requires_grad=True), torch.zeros(2, device="meta", requires_grad=True)], None),
    ([torch.zeros(2, device="meta", requires_grad=True)], None),
    ([], None),
])
def test_the_fused_update_is_asked_for_only_where_torch_has_it(params, expected):
    # None, not False: False would also turn off the multi-tensor update that torch picks on a GPU.
    assert one_kernel_update(params) is expected
