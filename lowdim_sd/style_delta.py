"""Keeping the style words through the fast finetune: a loss that says what each style adds.

A fast finetune on one photo teaches "[V]" the face, and also teaches the words after it to draw that
photo: on TinyFaces "a [V] face at night" comes out as a daylight photo (docs/ladder.md, rungs 11-12f).
For a style prompt S with the identifier, this loss pulls the adapted model's prediction on a noisy copy
of the reference toward

    adapted("a [V] face")  +  base(S without [V])  -  base("a face")

with no gradient through the target: the face from the adapter, and from the base model what the style
words add to a face. ``personalize --keep-styles λ`` adds it with weight λ; the base model's predictions
come from the same weights with the adapter switched off, so its frozen part must not be merged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim_sd.generate import IDENTIFIER

STYLE_SAMPLES = 2  # style prompts per step: rung 12f's setting


@dataclass(frozen=True)
class StylePrompts:
    """Token ids of the style prompts with and without the identifier, and of the training prompt."""

    styled: Tensor  # (S, L): each style prompt with the identifier
    styled_class: Tensor  # (S, L): the same without it
    plain: Tensor  # (1, L): the training prompt with the identifier
    plain_class: Tensor  # (1, L): the same without it
    # What stays fixed through a run, made on first use: the base text encoder's states of the two class
    # prompts and the reference's VAE posterior.
    cache: dict = field(default_factory=dict, compare=False, repr=False)


def without_identifier(prompt: str) -> str:
    """ "a [V] face at night" -> "a face at night": the class prompt the base model already knows."""
    return re.sub(r"\s+", " ", prompt.replace(IDENTIFIER, "")).strip()


def style_prompts(tokenizer, prompts: list[str], training_prompt: str, token: str) -> StylePrompts:
    """The style prompts (each with [V]) that differ from the training prompt, tokenized once."""
    styles = [p for p in prompts if IDENTIFIER in p and p != training_prompt]
    if not styles:
        raise LowdimError(f"--keep-styles needs style prompts with {IDENTIFIER} other than '{training_prompt}'")

    def ids(texts: list[str]) -> Tensor:
        return tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt",
                         max_length=tokenizer.model_max_length).input_ids

    return StylePrompts(styled=ids([p.replace(IDENTIFIER, token) for p in styles]),
                        styled_class=ids([without_identifier(p) for p in styles]),
                        plain=ids([training_prompt.replace(IDENTIFIER, token)]),
                        plain_class=ids([without_identifier(training_prompt)]))


@contextmanager
def base_model(adapters, name: str) -> Iterator[None]:
    """The model without adapter ``name`` (refused, naming it, when part of it is merged into the weights)."""
    adapters.disable(name)
    try:
        yield
    finally:
        adapters.enable(name)


def style_delta_loss(model, reference: Tensor, prompts: StylePrompts, adapters, name: str,
                     generator: torch.Generator, samples: int = STYLE_SAMPLES) -> Tensor:
    """The mean squared distance of the adapted styled prediction to its target (see the module's text).

    ``reference`` is (1, 3, H, W) in [-1, 1]; ``generator`` draws the styles, the noise and the timesteps.
    On a small model the time goes to calls rather than arithmetic, so the base model's two predictions
    share one UNet call and the adapted text encoder reads both prompts in one.
    """
    pipe, device, dtype = model.pipe, model.device, model.dtype
    pick = torch.randint(0, len(prompts.styled), (samples,), generator=generator)
    encode = pipe.text_encoder
    with torch.no_grad():
        mean, std = reference_posterior(pipe.vae, reference.to(device, dtype), prompts.cache)
        vae_noise = torch.randn((samples, *mean.shape[1:]), generator=generator).to(device, dtype)
        latents = (mean + std * vae_noise) * pipe.vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=generator).to(device, dtype)
        steps = model.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (samples,), generator=generator).to(device)
        noisy = model.noise_scheduler.add_noise(latents, noise, timesteps)
    adapted = encode(torch.cat([prompts.plain, prompts.styled[pick]]).to(device))[0]
    with torch.no_grad():
        face = pipe.unet(noisy, timesteps, adapted[:1].expand(samples, -1, -1)).sample
        with base_model(adapters, name):
            styled, plain = base_states(encode, prompts, device)
            both = torch.cat([styled[pick.to(device)], plain.expand(samples, -1, -1)])
            base = pipe.unet(noisy.repeat(2, 1, 1, 1), timesteps.repeat(2), both).sample
        target = face + base[:samples] - base[samples:]
    prediction = pipe.unet(noisy, timesteps, adapted[1:]).sample
    return (prediction.float() - target.float()).pow(2).mean()


def reference_posterior(vae, reference: Tensor, cache: dict) -> tuple[Tensor, Tensor]:
    """The VAE posterior's mean and std of the reference: the VAE is never adapted, so one encode serves
    every step of a run (the cache holds the last reference it saw)."""
    held = cache.get("reference")
    if held is None or held[0] is not reference and not torch.equal(held[0], reference):
        posterior = vae.encode(reference).latent_dist
        cache["reference"] = (reference, posterior.mean, posterior.std)
    return cache["reference"][1], cache["reference"][2]


def base_states(encode, prompts: StylePrompts, device) -> tuple[Tensor, Tensor]:
    """The base text encoder's states of the styled and the plain class prompts: fixed, so made once."""
    if "styled" not in prompts.cache:
        prompts.cache["styled"] = encode(prompts.styled_class.to(device))[0]
        prompts.cache["plain"] = encode(prompts.plain_class.to(device))[0]
    return prompts.cache["styled"], prompts.cache["plain"]
