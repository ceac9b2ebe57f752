"""Review FI's survivors on the training step: the teacher's input and --keep-styles' loss in the total."""

from __future__ import annotations

import pytest
import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import ADAPTER, adapter_trainable, resolve_layers
from lowdim_sd.style_delta import StyleTerm, style_prompts
from lowdim_sd.train import Subject, TrainConfig
from lowdim_sd.train_loss import denoising_losses

STYLES = ["a [V] face at night", "a [V] face, a pencil sketch"]


@pytest.fixture(scope="module")
def model(tiny_sd):
    return load_sd(str(tiny_sd))


def _ids(model):
    return model.pipe.tokenizer("a sks face", padding="max_length", truncation=True, return_tensors="pt",
                                max_length=model.pipe.tokenizer.model_max_length).input_ids


def test_a_teacher_is_asked_about_the_very_noisy_latents_and_timesteps_the_unet_is_given(model, faces,
                                                                                          monkeypatch):
    seen, asked = {}, {}
    real = model.pipe.unet.forward

    def unet(sample, timesteps, *args, **kwargs):
        seen.update(noisy=sample, timesteps=timesteps)
        return real(sample, timesteps, *args, **kwargs)

    def teacher(noisy, timesteps):
        asked.update(noisy=noisy, timesteps=timesteps)
        return torch.zeros_like(noisy)

    monkeypatch.setattr(model.pipe.unet, "forward", unet)
    with torch.no_grad():
        denoising_losses(model, [Subject(faces[:1], seed=1)], TrainConfig(batch_size=4, augment=False), 0, 0,
                         _ids(model), teacher=teacher)
    assert torch.equal(asked["noisy"], seen["noisy"]) and torch.equal(asked["timesteps"], seen["timesteps"])


def test_keep_styles_adds_its_weighted_loss_to_the_finetune_loss(tiny_sd, faces):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    with torch.no_grad():  # LoRA's up factor starts at zero: make the adapter change the model
        for param in trainable.parameters:
            param.normal_(0, 0.2)
    config, ids, subjects = TrainConfig(batch_size=2, augment=False), _ids(model), [Subject(faces[:1], 0)]

    def loss(weight):
        term = None if weight is None else StyleTerm(style_prompts(model.pipe.tokenizer, STYLES, "a [V] face", "sks"),
                                                      trainable.adapters, ADAPTER, weight, faces[:1])
        with torch.no_grad():
            return float(denoising_losses(model, subjects, config, 0, 0, ids, styles=term))

    alone, once, twice = loss(None), loss(1.0), loss(2.0)
    assert once - alone > 1e-6  # the styles' term is in what the step minimises
    assert twice - alone == pytest.approx(2 * (once - alone), rel=1e-3)


def test_the_reported_loss_of_a_grad_accum_step_is_the_mean_of_its_micro_steps(tiny_sd, faces):
    """TrainResult.losses (the bar's loss, what stop_if_diverged judges) is the step's loss at any --grad-accum:
    the mean of its micro-steps' losses, not their sum (2x the loss of the same run without accumulation)."""
    from lowdim_sd.train import prompt_ids, train

    model = load_sd(str(tiny_sd))
    subjects = [Subject(faces, seed=1)]
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    config = TrainConfig(steps=1, augment=False, grad_accum=2)
    ids = prompt_ids(model, config)
    with torch.no_grad():  # the loss at the start, which the one step is taken from
        micro = [float(denoising_losses(model, subjects, config, 0, m, ids).mean()) for m in range(2)]
    result = train(model, subjects, trainable, config, progress=False)
    assert result.losses[0] == pytest.approx(sum(micro) / 2, rel=1e-5)
