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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lowdim.errors import LowdimError
from lowdim_sd.prompt_words import IDENTIFIER

if TYPE_CHECKING:
    from lowdim_sd.loading import SDModel

STYLE_SAMPLES = 2  # style prompts per step: rung 12f's setting


@dataclass(frozen=True)
class StylePrompts:
    """Token ids of the style prompts with and without the identifier, and of the training prompt without it."""

    styled: Tensor  # (S, L): each style prompt with the identifier
    styled_class: Tensor  # (S, L): the same without it
    plain_class: Tensor  # (1, L): the training prompt without the identifier
    # The base text encoder's states of the two class prompts: fixed, so made once, on first use.
    base_states: dict[str, Tensor] = field(default_factory=dict, compare=False, repr=False)


def without_identifier(prompt: str) -> str:
    """ "a [V] face at night" -> "a face at night": the class prompt the base model already knows."""
    return re.sub(r"\s+", " ", prompt.replace(IDENTIFIER, "")).strip()


def style_prompts(tokenizer: Any, prompts: list[str], training_prompt: str, token: str) -> StylePrompts:
    """The style prompts (each with [V]) that differ from the training prompt, tokenized once."""
    styles = [p for p in prompts if IDENTIFIER in p and p != training_prompt]
    if not styles:
        raise LowdimError(f"--keep-styles needs style prompts with {IDENTIFIER} other than '{training_prompt}'")

    def ids(texts: list[str]) -> Tensor:
        return tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt",
                         max_length=tokenizer.model_max_length).input_ids

    return StylePrompts(styled=ids([p.replace(IDENTIFIER, token) for p in styles]),
                        styled_class=ids([without_identifier(p) for p in styles]),
                        plain_class=ids([without_identifier(training_prompt)]))


@dataclass(frozen=True)
class StyleRows:
    """The rows --keep-styles adds to a finetune batch: its own noisy copies of the reference, first under
    the training prompt (the target's face term), then under a style prompt each."""

    noisy: Tensor  # (samples, C, h, w)
    timesteps: Tensor  # (samples,)
    styles: Tensor  # (samples,): indices into StylePrompts.styled


@dataclass(frozen=True)
class StyleTerm:
    """--keep-styles for one subject's finetune, riding in the denoising batch's UNet call.

    ``extend`` appends 2 × ``samples`` rows to the batch: noisy copies of the reference drawn from their
    own generator, under the training prompt and under a style prompt. The one UNet call then predicts the
    batch, the face term of the target (read without gradient) and the styled prediction; the only extra
    call is the base model's, for both its predictions. The loss is the one separate calls give; on
    TinyFaces, where the time goes to calls more than to arithmetic, the finetune with the term went
    from 2.5× the plain one's time to 1.6× (docs/sd.md).
    """

    prompts: StylePrompts
    adapters: Any
    name: str
    weight: float
    reference: Tensor  # (1, 3, H, W) in [-1, 1]
    samples: int = STYLE_SAMPLES
    # The reference's VAE posterior: the VAE is never adapted, so one encode serves the whole run.
    posterior: dict = field(default_factory=dict, compare=False, repr=False)

    def draw(self, model: SDModel, generator: torch.Generator) -> StyleRows:
        """The styles, the VAE noise, the noise and the timesteps of this step's rows, in that order."""
        pipe, device, dtype = model.pipe, model.device, model.dtype
        styles = torch.randint(0, len(self.prompts.styled), (self.samples,), generator=generator)
        with torch.no_grad():
            if not self.posterior:
                latent = pipe.vae.encode(self.reference.to(device, dtype)).latent_dist
                self.posterior.update(mean=latent.mean, std=latent.std)
            mean, std = self.posterior["mean"], self.posterior["std"]
            vae_noise = torch.randn((self.samples, *mean.shape[1:]), generator=generator).to(device, dtype)
            latents = (mean + std * vae_noise) * pipe.vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=generator).to(device, dtype)
            steps = model.noise_scheduler.config.num_train_timesteps
            timesteps = torch.randint(0, steps, (self.samples,), generator=generator).to(device)
            noisy = model.noise_scheduler.add_noise(latents, noise, timesteps)
        return StyleRows(noisy, timesteps, styles)

    def extend(self, model: SDModel, noisy: Tensor, timesteps: Tensor, hidden: Tensor,
               generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, StyleRows]:
        """(noisy, timesteps, hidden states) with this step's rows appended, and the rows.

        ``hidden`` is the batch's states of the training prompt through the adapted text encoder."""
        rows = self.draw(model, generator)
        styled = model.pipe.text_encoder(self.prompts.styled[rows.styles].to(noisy.device))[0]
        face = hidden[:1].expand(self.samples, -1, -1)
        return (torch.cat([noisy, rows.noisy, rows.noisy]), torch.cat([timesteps, rows.timesteps, rows.timesteps]),
                torch.cat([hidden, face, styled.to(hidden.dtype)]), rows)

    def loss(self, model: SDModel, prediction: Tensor, rows: StyleRows) -> Tensor:
        """``weight`` × the mean squared distance of the styled prediction to its target (the module's
        text). ``prediction`` is the extended batch's: the batch, then the face rows, then the styled rows."""
        pipe, samples = model.pipe, self.samples
        face, styled_prediction = prediction[-2 * samples:-samples].detach(), prediction[-samples:]
        with torch.no_grad(), self.adapters.disabled(self.name):
            styled, plain = base_states(pipe.text_encoder, self.prompts, rows.noisy.device)
            states = torch.cat([styled[rows.styles.to(rows.noisy.device)], plain.expand(samples, -1, -1)])
            base = pipe.unet(rows.noisy.repeat(2, 1, 1, 1), rows.timesteps.repeat(2), states).sample
        target = face + base[:samples] - base[samples:]
        return self.weight * (styled_prediction.float() - target.float()).pow(2).mean()


def base_states(encode: Callable[[Tensor], Any], prompts: StylePrompts,
                device: torch.device) -> tuple[Tensor, Tensor]:
    """The base text encoder's states of the styled and the plain class prompts: fixed, so made once."""
    states = prompts.base_states
    if not states:
        states["styled"] = encode(prompts.styled_class.to(device))[0]
        states["plain"] = encode(prompts.plain_class.to(device))[0]
    return states["styled"], states["plain"]
