"""The optimizer settings a run is told, seen in what it does to the weights: TrainConfig.weight_decay and SGD's
momentum (its doc: 0.9). Review CM's surviving mutants; one- and two-step runs of a LoRA on the tiny model. And
review CM2's: a step's dropout masks are its own, and --keep-styles' rows draw apart from the batch."""

from __future__ import annotations

import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import ADAPTER, adapter_trainable, resolve_layers
from lowdim_sd.style_delta import STYLE_SAMPLES, StyleTerm, style_prompts
from lowdim_sd.train import Subject, TrainConfig, prompt_ids, train, with_defaults
from lowdim_sd.train_loss import denoising_losses, dropout_draws

RATE = 1e-2
SUBJECT = Subject(torch.zeros(1, 3, 16, 16), 1)


def _lora(tiny_sd):
    """The tiny model with a LoRA whose factors are all non-zero, so every one has a gradient and decays."""
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in trainable.parameters:
            param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model, trainable


def _weights(trainable) -> list[torch.Tensor]:
    return [param.detach().clone() for param in trainable.parameters]


def _train(model, trainable, steps: int, **settings) -> None:
    config = TrainConfig(steps=steps, learning_rate=RATE, augment=False, max_grad_norm=None, **settings)
    train(model, [SUBJECT], trainable, config, progress=False)


def test_weight_decay_shrinks_each_weight_by_rate_times_decay_on_top_of_its_step(tiny_sd):
    """AdamW's decoupled decay: one step with decay 0.5 lands lr * 0.5 * w0 below the same step without."""
    ends = []
    for decay in (0.0, 0.5):
        model, trainable = _lora(tiny_sd)
        start = _weights(trainable)
        _train(model, trainable, 1, weight_decay=decay)
        ends.append(_weights(trainable))
    for w0, plain, decayed in zip(start, *ends, strict=True):
        torch.testing.assert_close(decayed, plain - RATE * 0.5 * w0, atol=1e-6, rtol=1e-5)


def _gradient(model, trainable, step: int) -> list[torch.Tensor]:
    """The loss's gradient at the trainable's weights as they are, with the draws of ``step``: what that step of
    a run uses (one subject, no clipping, no accumulation)."""
    config = with_defaults(TrainConfig(learning_rate=RATE, augment=False))
    losses = denoising_losses(model, [SUBJECT], config, step, 0, prompt_ids(model, config))
    return list(torch.autograd.grad(losses.sum(), trainable.parameters))


def test_sgd_s_second_step_carries_nine_tenths_of_the_first_gradient(tiny_sd):
    """TrainConfig's doc: SGD with momentum 0.9, so the second update is lr * (g2 + 0.9 * g1), g1 the first
    step's gradient and g2 the second's, at the weights the first step left."""
    model, trainable = _lora(tiny_sd)
    start = _weights(trainable)
    _train(model, trainable, 1, optimizer="sgd")
    after_one = _weights(trainable)
    first = [(w0 - w1) / RATE for w0, w1 in zip(start, after_one, strict=True)]  # a plain first step: lr * g1
    second = _gradient(model, trainable, 1)

    model, trainable = _lora(tiny_sd)
    _train(model, trainable, 2, optimizer="sgd")
    assert all(float(g.abs().max()) > 1e-5 for g in first)  # every factor has a step to carry
    for w1, w2, g1, g2 in zip(after_one, _weights(trainable), first, second, strict=True):
        torch.testing.assert_close(w2, w1 - RATE * (g2 + 0.9 * g1), atol=1e-6, rtol=1e-4)


def test_dropout_masks_are_drawn_anew_at_each_step_and_again_alike_for_the_same_step(tiny_sd):
    """--dropout's masks (the adapter's functional dropout, under the step's seeding) differ between steps and
    micro-steps, or one fixed sub-network would be trained all run; the same (seed, step, micro) redraws the same
    masks, which a resumed run relies on."""
    model = load_sd(str(tiny_sd))

    def mask(step: int, micro: int = 0) -> torch.Tensor:
        with dropout_draws(model, 0, step, micro, True):
            return torch.nn.functional.dropout(torch.ones(256), 0.5, training=True) == 0

    assert torch.equal(mask(0), mask(0)) and torch.equal(mask(7, 1), mask(7, 1))
    for one, other in (((0, 0), (1, 0)), ((3, 0), (7, 0)), ((0, 0), (0, 1))):
        assert not torch.equal(mask(*one), mask(*other)), (one, other)


def test_keep_styles_rows_get_noise_and_timesteps_apart_from_the_batchs(tiny_sd, monkeypatch):
    """The style rows' generator is not the batch's: with as many copies as style rows and no augment, one seeded
    like the batch's would replay its draws, and the rows would get exactly the batch's noise and timesteps."""
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lora"), resolve_layers(None))
    reference = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    prompts = style_prompts(model.pipe.tokenizer, ["a [V] face at night", "a pencil sketch of a [V] face"],
                            "a [V] face", "sks")
    term = StyleTerm(prompts, trainable.adapters, ADAPTER, 1.0, reference)
    calls = []
    add_noise = model.noise_scheduler.add_noise

    def record(latents, noise, timesteps):
        calls.append((noise.clone(), timesteps.clone()))
        return add_noise(latents, noise, timesteps)

    monkeypatch.setattr(model.noise_scheduler, "add_noise", record)
    config = TrainConfig(batch_size=STYLE_SAMPLES, augment=False, prompt="a [V] face", token="sks")
    with torch.no_grad():
        denoising_losses(model, [Subject(reference, 4)], config, 0, 0, prompt_ids(model, config), styles=term)
    (batch_noise, batch_steps), (style_noise, style_steps) = calls  # the batch's add_noise, then the rows'
    assert batch_noise.shape == style_noise.shape
    assert not torch.equal(batch_noise, style_noise)
    assert not torch.equal(batch_steps, style_steps)
