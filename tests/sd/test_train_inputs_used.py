"""What a finetune step is fed: every reference image, augmented when asked, a fresh draw per --grad-accum
micro-step with the gradient averaged over them, and --dropout masks that depend on the run's seed alone.

Each test pins one input the comparison tests (batched against alone, resumed against straight) cannot see,
because both sides of those comparisons share the code that draws it.
"""

from __future__ import annotations

import pytest
import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, prompt_ids, train
from lowdim_sd.train_loss import denoising_losses, subject_draws

pytestmark = pytest.mark.usefixtures("one_thread")


def _references() -> torch.Tensor:
    """Three distinct 16x16 reference images in [-1, 1]."""
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(11)) * 2 - 1


def _which_reference(image: torch.Tensor, references: torch.Tensor) -> int:
    matches = [i for i, reference in enumerate(references) if torch.equal(image, reference)]
    assert len(matches) == 1, "an un-augmented draw is exactly one of the reference images"
    return matches[0]


def test_every_reference_image_of_a_subject_is_trained_on(model):
    references = _references()
    subject = Subject(references, seed=2)
    config = TrainConfig(batch_size=4, augment=False)
    picked = {_which_reference(image, references)
              for step in range(4) for image in subject_draws(model, subject, config, step, 0)[0]}
    assert picked == {0, 1, 2}


def test_augment_changes_the_images_a_step_trains_on(model):
    references = _references()
    subject = Subject(references, seed=2)
    for step in range(3):
        plain = subject_draws(model, subject, TrainConfig(batch_size=8, augment=False), step, 0)[0]
        augmented = subject_draws(model, subject, TrainConfig(batch_size=8, augment=True), step, 0)[0]
        assert augmented.shape == plain.shape
        # the picks come before augment's draws, so they agree; the pictures must not (an image whose crop rounds
        # to the full size and that is not flipped comes out unchanged, so not every one differs)
        assert not torch.equal(augmented, plain)


def test_grad_accum_steps_along_the_mean_gradient_of_its_micro_steps_own_draws(tiny_sd, faces):
    model = load_sd(str(tiny_sd))
    subjects = [Subject(faces, seed=1)]
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    with torch.no_grad():
        for param in trainable.parameters:  # LoRA's up starts at 0: give every factor a gradient
            param.normal_(0, 0.1)
    before = [p.detach().clone() for p in trainable.parameters]
    config = TrainConfig(steps=1, learning_rate=0.5, augment=False, optimizer="sgd", max_grad_norm=None, grad_accum=2)
    ids = prompt_ids(model, config)  # what train() feeds the text encoder
    per_micro = [torch.autograd.grad(denoising_losses(model, subjects, config, 0, micro, ids).mean(),
                                     trainable.parameters) for micro in range(2)]
    # The two micro-steps must see different draws, or averaging them could not be told from repeating one.
    assert any((a - b).abs().max() > 1e-3 * a.abs().max() for a, b in zip(*per_micro, strict=True))
    train(model, subjects, trainable, config, progress=False)
    for start, first, second, param in zip(before, *per_micro, trainable.parameters, strict=True):
        torch.testing.assert_close(param.detach(), start - 0.5 * (first + second) / 2, atol=1e-6, rtol=1e-4)


def _dropout_run(tiny_sd, faces, callers_seed: int, steps: int = 2) -> dict[str, torch.Tensor]:
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None), dropout=0.5)
    torch.manual_seed(callers_seed)  # the caller's own stream, which a run's masks must not come from
    train(model, [Subject(faces[:1], 5)], trainable, TrainConfig(steps=steps, learning_rate=2e-2, augment=False),
          progress=False)
    return trainable.state()


def test_dropout_masks_come_from_the_runs_seed_not_the_callers_torch_seed(tiny_sd, faces):
    first = _dropout_run(tiny_sd, faces, callers_seed=0)
    second = _dropout_run(tiny_sd, faces, callers_seed=12345)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
