"""Data, loss and sampling functions for the two training stages (no I/O here).

Every batch is rendered on the fly from an RNG seeded by (run seed, stage, step),
so a resumed run sees exactly the stream an uninterrupted one would have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from .captions import attribute_caption
from .identity import CARDINALITIES
from .styles import STYLES
from .world import render_tensor

if TYPE_CHECKING:  # the top-level diffusers names type as dummies, not Modules
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

VAE_STAGE, UNET_STAGE, EVAL_STREAM = 1, 2, 3


def step_rng(seed: int, stage: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, stage, step])


def torch_gen(seed: int, stage: int, step: int) -> torch.Generator:
    # Same triple as the numpy RNG, folded into one 63-bit seed for torch.
    return torch.Generator().manual_seed(int(step_rng(seed, stage, step).integers(0, 2**62)))


def sample_batch(seed: int, stage: int, step: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factor levels (N, F), style ids (N,) and nuisance seeds (N,) of one step's batch."""
    rng = step_rng(seed, stage, step)
    levels = rng.integers(0, CARDINALITIES, size=(n, len(CARDINALITIES)))
    style_ids = rng.integers(0, len(STYLES), size=n)
    seeds = rng.integers(0, 2**62, size=n, dtype=np.int64)
    return levels, style_ids, seeds


def render_batch(
    seed: int, stage: int, step: int, n: int, size: int
) -> tuple[Tensor, np.ndarray]:
    """Images (N, 3, S, S) in [-1, 1] of random identities / styles / nuisance, and style ids."""
    levels, style_ids, seeds = sample_batch(seed, stage, step, n)
    return render_tensor(levels, [int(s) for s in style_ids], seeds, size), style_ids


def batch_captions(seed: int, stage: int, step: int, levels: np.ndarray, style_ids: np.ndarray,
                   dropout: float) -> list[str]:
    """Attribute captions of one step's batch ("" for the dropped ones, for guidance)."""
    rng = np.random.default_rng([seed, stage, step, 1])  # its own stream: images stay as before
    captions = [attribute_caption(lv, int(s), rng) for lv, s in zip(levels, style_ids, strict=True)]
    return ["" if rng.random() < dropout else c for c in captions]


def vae_loss(vae: AutoencoderKL, images: Tensor, kl_weight: float, gen: torch.Generator) -> dict:
    """L1 reconstruction through a sampled latent plus a tiny KL (SD uses ~1e-6)."""
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample(generator=gen)).sample
    l1 = (recon - images).abs().mean()
    kl = posterior.kl().mean() / images[0].numel()
    return {"loss": l1 + kl_weight * kl, "l1": l1, "kl": kl}


def encode_prompts(text_encoder: nn.Module, ids: Tensor) -> Tensor:
    return text_encoder(ids)[0]


def diffusion_loss(
    unet: nn.Module,
    text_encoder: nn.Module,
    latents: Tensor,
    prompt_ids: Tensor,
    prompt_index: Tensor,
    scheduler,
    gen: torch.Generator,
    snr_gamma: float = 5.0,
) -> Tensor:
    """Epsilon-prediction loss with Min-SNR-gamma weighting.

    ``prompt_ids`` holds the few distinct prompts (styles + empty); they are
    encoded once and gathered by ``prompt_index``, which is 10x cheaper than
    encoding the whole batch and gives the same gradients.
    Min-SNR (Hang et al. 2023) stops easy low-noise steps dominating and speeds
    convergence, which matters with only a few thousand CPU steps.
    """
    n, device = latents.shape[0], latents.device
    # Drawn on the CPU generator whatever the device, so a run's noise does not depend on where it runs.
    noise = torch.randn(latents.shape, generator=gen).to(device)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=gen)
    noisy = scheduler.add_noise(latents, noise, t.to(device))
    context = encode_prompts(text_encoder, prompt_ids.to(device))[prompt_index.to(device)]
    pred = unet(noisy, t.to(device), context).sample
    alpha_bar = scheduler.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)
    weight = (snr.clamp(max=snr_gamma) / snr).to(device)
    per_item = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
    return (per_item * weight).mean()


@torch.no_grad()
def sample_latents(
    unet: nn.Module,
    text_encoder: nn.Module,
    cond_ids: Tensor,
    uncond_ids: Tensor,
    scheduler,
    gen: torch.Generator,
    steps: int = 25,
    guidance: float = 4.0,
) -> Tensor:
    """DDIM with classifier-free guidance, the same maths as StableDiffusionPipeline.

    ``unet`` is always a diffusers UNet2DConditionModel; the training code holds it as a Module, so it is
    narrowed here for the checker (no run-time effect) rather than in every caller's signature.
    """
    model = cast("UNet2DConditionModel", unet)
    n, device = cond_ids.shape[0], model.device
    context = torch.cat([encode_prompts(text_encoder, uncond_ids.to(device)).expand(n, -1, -1),
                         encode_prompts(text_encoder, cond_ids.to(device))])
    # Item access: diffusers types ``config`` as a plain dict (at run time a FrozenDict that also has attributes).
    size = model.config["sample_size"]
    x = torch.randn((n, model.config["in_channels"], size, size), generator=gen).to(device)
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = unet(torch.cat([x, x]), t, context).sample
        uncond, cond = eps.chunk(2)
        x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample
    return x


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3) for save_grid."""
    return (
        images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    )
