"""Review FK (session 65): phase 1's diffusion term draws its noise per identity, and validation's is the same at
every step (hypertrain_losses.pair_losses); a stand-in Diffusion records what it is given."""

from __future__ import annotations

from pathlib import Path

import torch
from hypertrain_jobs import HYPER  # tests/sd, on the path as pytest puts it
from test_hypertrain_losses import random_params, tiny_net

import lowdim_sd.hypertrain_losses as hl
from lowdim_sd.hypertrain import HyperTrainJob


class SeedRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], int]] = []

    def loss(self, iterates, images, seeds, step, augment, teacher=None):
        self.calls.append((list(seeds), step))
        return torch.tensor(1.0)


def _run(net, recorder, numbers, step, train, seed=0):
    images = torch.rand(len(numbers), 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    job = HyperTrainJob(weights=Path("unused"), hyper=HYPER, seed=seed)
    with torch.no_grad():
        hl.pair_losses(net, recorder, (images, random_params(net, len(numbers), seed=3), torch.tensor(numbers), None),
                       step, job, train=train)
    return recorder.calls[-1]


def test_each_identity_of_a_batch_draws_its_own_noise_whatever_batch_it_is_in():
    net, recorder = tiny_net().eval(), SeedRecorder()
    seeds, _ = _run(net, recorder, [4, 7, 9], 1, train=True)
    assert len(set(seeds)) == 3  # three identities, three noise streams
    alone, _ = _run(net, recorder, [7], 1, train=True)
    assert alone == [seeds[1]]  # identity 7's draws do not depend on its batch
    other_run, _ = _run(net, recorder, [7], 1, train=True, seed=1)
    assert other_run != alone  # --seed changes them


def test_validation_draws_the_same_noise_at_every_step_and_training_new_noise_each_step():
    net, recorder = tiny_net().eval(), SeedRecorder()
    validated = {_run(net, recorder, [4, 7], step, train=False)[1] for step in (1, 5, 40)}
    trained = {_run(net, recorder, [4, 7], step, train=True)[1] for step in (1, 5, 40)}
    assert len(validated) == 1 and len(trained) == 3
    assert validated.isdisjoint(trained)  # validation's draws are no training step's


def test_the_diffusion_term_is_the_mean_of_its_samples_losses_not_their_sum(monkeypatch):
    """D of eq. 2 is a mean over iterates and samples: its scale (and so alpha's meaning) does not grow with the
    batch or --diffusion-iterates all."""
    from test_hypertrain_losses import OverridingAdapters

    from lowdim_sd.train import TrainConfig

    monkeypatch.setattr(hl, "denoising_losses", lambda model, subjects, *rest: torch.arange(1.0, len(subjects) + 1))
    diffusion = object.__new__(hl.Diffusion)  # the SD model is never reached: denoising_losses is replaced
    diffusion.adapters, diffusion.model = OverridingAdapters(), None
    diffusion.config, diffusion.input_ids = TrainConfig(batch_size=1), torch.zeros(1, 4, dtype=torch.long)
    net = tiny_net()
    iterates = [random_params(net, 2, seed=k) for k in range(3)]
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    loss = diffusion.loss(iterates, images, seeds=[4, 7], step=1, augment=False)
    torch.testing.assert_close(loss, torch.tensor(3.5))  # the mean of 1..6
