"""One subject's gradient is clipped to max_grad_norm, as several subjects' are (the default is 1.0).

A fixed, fast case beside test_batched_subjects_property.py, whose clipped draws are the only other check of
this and take minutes to fail while hypothesis shrinks. SGD's first step is lr times the gradient, so the
clipped step is known exactly from the gradient measured here."""

from __future__ import annotations

import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, denoising_losses, train

RATE = 0.5


def test_one_subject_over_the_norm_takes_a_step_of_the_clipped_size(tiny_sd, faces):
    model = load_sd(str(tiny_sd))
    subjects = [Subject(faces[:1], seed=1)]
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    with torch.no_grad():
        for param in trainable.parameters:  # LoRA's up starts at 0: give every factor a gradient
            param.normal_(0, 0.1)
    before = [p.detach().clone() for p in trainable.parameters]
    probe = TrainConfig(steps=1, learning_rate=RATE, augment=False, optimizer="sgd", max_grad_norm=None)
    ids = model.pipe.tokenizer("a sks face", padding="max_length", max_length=77, return_tensors="pt").input_ids
    loss = denoising_losses(model, subjects, probe, 0, 0, ids).mean()
    grads = torch.autograd.grad(loss, trainable.parameters)
    norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
    limit = norm / 4  # well over the norm: an unclipped step is four times the clipped one
    config = TrainConfig(steps=1, learning_rate=RATE, augment=False, optimizer="sgd", max_grad_norm=limit)

    train(model, subjects, trainable, config, progress=False)

    factor = limit / (norm + 1e-6)  # torch's clip_grad_norm_ divides by the norm plus 1e-6
    steps = [start - param.detach() for start, param in zip(before, trainable.parameters, strict=True)]
    for step, grad in zip(steps, grads, strict=True):
        torch.testing.assert_close(step, RATE * factor * grad, atol=1e-6, rtol=1e-4)
    taken = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in steps])))
    assert abs(taken - RATE * limit) < 1e-3 * RATE * limit, (taken, RATE * limit, RATE * norm)
