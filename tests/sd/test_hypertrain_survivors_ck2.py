"""Review CK2's surviving mutants of the train-hypernet loop, pinned: --max-grad-norm reaches the optimizer,
--extra-images' loss is weighted by alpha, and StepSampler reads the identities in a new order every epoch."""

from __future__ import annotations

import pytest
import torch
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it
from hypothesis import given
from hypothesis import strategies as st
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim_sd.hypertrain as engine
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.hypertrain_io import StepSampler

LIMIT = 1e-4
EXTRA_D = 3.0


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    """A weight dataset of four identities (one random 16x16 image each)."""
    return weight_folders(tmp_path_factory.mktemp("ck2data"), "w", 4, seed=9)


def gradient_norms(weights, out, monkeypatch, max_grad_norm: float | None) -> list[float]:
    """The total 2-norm of the gradient AdamW is handed at each step of a two-step run."""
    norms: list[float] = []
    real = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        grads = [p.grad.flatten() for group in self.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()))
        return real(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", spy)
        # alpha=0: the weight loss alone, so the run needs no diffusion model; a tiny lr keeps step 2 like step 1
        train_hypernet(job(weights, out, alpha=0.0, steps=2, batch_size=3, learning_rate=1e-12, val_every=0,
                           checkpoint_every=0, max_grad_norm=max_grad_norm), progress=False)
    return norms


@pytest.mark.usefixtures("one_thread")
def test_the_optimizer_gets_a_gradient_no_longer_than_max_grad_norm(weights, tmp_path, monkeypatch):
    unclipped = gradient_norms(weights, tmp_path / "free", monkeypatch, None)
    assert len(unclipped) == 2 and min(unclipped) > 10 * LIMIT  # so the limit below binds
    clipped = gradient_norms(weights, tmp_path / "clipped", monkeypatch, LIMIT)
    assert len(clipped) == 2
    for norm in clipped:  # clip_grad_norm_ scales by max_norm / (norm + 1e-6): at most the limit
        assert norm <= LIMIT * (1 + 1e-3), f"gradient norm {norm} handed to AdamW exceeds max_grad_norm {LIMIT}"


@pytest.mark.usefixtures("one_thread")
def test_the_extra_images_loss_is_weighted_by_alpha_not_beta(weights, tmp_path, monkeypatch):
    extra = tmp_path / "extra"
    save_images(torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1, extra, "fresh")
    pair_values: list[float] = []
    real = engine.pair_losses

    def spy(*args, **kwargs):
        losses = real(*args, **kwargs)
        if kwargs.get("train"):
            pair_values.append(float(losses["loss"].detach()))
        return losses

    monkeypatch.setattr(engine, "pair_losses", spy)
    monkeypatch.setattr(engine, "extra_loss", lambda *args, **kwargs: torch.tensor(EXTRA_D))
    result = train_hypernet(job(weights, tmp_path / "h", steps=2, val_every=0, checkpoint_every=0, alpha=0.5,
                                beta=2.0, diffusion_iterates="last", extra_images=[extra], extra_batch_size=2),
                            progress=False)
    assert len(result.losses) == len(pair_values) == 2
    for got, pairs in zip(result.losses, pair_values, strict=True):
        assert got == pytest.approx(pairs + 0.5 * EXTRA_D, rel=1e-5)  # alpha * D; beta would give pairs + 6


@given(size=st.integers(2, 12), per_step=st.integers(1, 6), seed=st.integers(0, 2**16), start=st.integers(0, 20))
def test_every_epoch_reads_each_identity_once_in_its_own_order_and_a_resume_continues_it(size, per_step, seed,
                                                                                         start):
    epochs = 6
    steps = -(-epochs * size // per_step)  # enough steps to cover six whole epochs
    order = list(StepSampler(size, per_step, seed=seed, start=0, steps=steps))
    assert len(order) == steps * per_step
    orders = [order[e * size:(e + 1) * size] for e in range(epochs)]
    assert all(sorted(epoch) == list(range(size)) for epoch in orders)
    resumed = list(StepSampler(size, per_step, seed=seed, start=min(start, steps), steps=steps))
    assert resumed == order[min(start, steps) * per_step:]  # a mid-epoch resume continues that epoch's order


def test_the_epochs_are_not_all_in_one_order():
    size = 10
    order = list(StepSampler(size, 5, seed=0, start=0, steps=8))  # four epochs
    orders = {tuple(order[e * size:(e + 1) * size]) for e in range(4)}
    assert len(orders) == 4, f"epochs repeat an order: {sorted(orders)}"
    resumed = list(StepSampler(size, 5, seed=0, start=3, steps=8))  # step 3 starts halfway through epoch 1
    assert resumed[:5] == order[15:20] and resumed == order[15:]
