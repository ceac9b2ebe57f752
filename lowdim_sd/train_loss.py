"""The random draws and the loss of one training step, apart from the loop that runs the steps
(``lowdim_sd.train``).

Every draw comes from a generator seeded by (subject seed, step, micro-step), never from a running stream: a
resumed run sees exactly the data an uninterrupted one would, and a subject trained in a batch of K sees exactly
what it would see trained alone (adapter dropout's masks aside: they are seeded per step too, but for the whole
batch at once; see ``dropout_draws``). ``denoising_losses`` is the per-subject loss the engine, the hypernetwork's
training and the speed bench all compute.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

from lowdim.injection.layer import AdapterSlot
from lowdim_sd.image_augment import augment
from lowdim_sd.loading import SDModel
from lowdim_sd.step_graphs import StepModels, eager_models
from lowdim_sd.train_settings import Subject, TrainConfig

if TYPE_CHECKING:
    from lowdim_sd.style_delta import StyleTerm
    from lowdim_sd.train import Trainable


def _seed(*parts: object) -> int:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def step_generator(seed: int, step: int, micro: int) -> torch.Generator:
    """A generator of its own for one micro-step of one seed: the same draws whenever that step runs."""
    return torch.Generator().manual_seed(_seed(seed, step, micro))


def drops_inputs(model: SDModel) -> bool:
    """Whether an adapter on the model has input dropout, the one draw of a step from torch's own generators."""
    return any(module.dropout for module in model.modules.modules() if isinstance(module, AdapterSlot))


@contextlib.contextmanager
def dropout_draws(model: SDModel, seed: int, step: int, micro: int, enabled: bool) -> Iterator[None]:
    """Dropout masks come from torch's global generators: those are seeded here by (seed, step, micro-step), as
    every other draw of a step is, so a resumed run drops what an uninterrupted one would; and put back after,
    so the caller's own stream goes on as if no step had run."""
    if not enabled:
        yield
        return
    with torch.random.fork_rng(**accelerator_generator(model.device)):  # the CPU's state, and the model's device's
        torch.manual_seed(_seed("dropout", seed, step, micro))
        yield


def accelerator_generator(device: torch.device) -> dict:
    """``fork_rng``'s arguments for the generator of the model's device besides the CPU's (a GPU's, Apple's MPS,
    any accelerator), which ``manual_seed`` seeds too; none on the CPU."""
    if device.type in ("cpu", "meta"):
        return {"devices": []}
    index = device.index if device.index is not None else torch.cuda.current_device() if device.type == "cuda" else 0
    return {"devices": [index], "device_type": device.type}


def subject_draws(model: SDModel, subject: Subject, config: TrainConfig, step: int,
                  micro: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(images, latent noise, diffusion noise, timesteps) for one subject from its own generator."""
    generator = step_generator(subject.seed, step, micro)
    picks = torch.randint(0, len(subject.images), (config.batch_size,), generator=generator)
    images = subject.images[picks]
    if config.augment:
        images = augment(images, generator)
    height, width, factor = *images.shape[-2:], model.pipe.vae_scale_factor
    shape = (config.batch_size, model.pipe.unet.config.in_channels, height // factor, width // factor)
    vae_noise = torch.randn(shape, generator=generator)
    noise = torch.randn(shape, generator=generator)
    steps = model.pipe.scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (config.batch_size,), generator=generator)
    return images, vae_noise, noise, timesteps


def interleave(parts: list[Tensor]) -> Tensor:
    """Sample j of the batch belongs to subject j % K: the per-sample adapter layout."""
    return torch.stack(parts, dim=1).flatten(0, 1)


def denoising_losses(model: SDModel, subjects: list[Subject], config: TrainConfig, step: int, micro: int,
                     input_ids: Tensor, teacher: Callable[[Tensor, Tensor], Tensor] | None = None,
                     styles: StyleTerm | None = None, models: StepModels | None = None) -> Tensor:
    """Per-subject mean denoising loss, shape (K,), with the model's own scheduler and prediction type.

    ``teacher(noisy, timesteps)``, when given, replaces the regression target (the noise, or v) with its
    own prediction: distillation, whose target carries none of the noise's variance. ``styles``, a
    lowdim_sd.style_delta.StyleTerm (one subject), adds --keep-styles' rows to the same UNet call and its
    loss to the result. ``models`` says how the text encoder and the UNet are called (default: eagerly).
    """
    models = models or eager_models(model.pipe)
    draws = [subject_draws(model, s, config, step, micro) for s in subjects]
    device, dtype = model.device, model.dtype
    images, vae_noise, noise, timesteps = (interleave([d[i] for d in draws]).to(device) for i in range(4))
    pipe = model.pipe
    with torch.no_grad():
        posterior = pipe.vae.encode(images.to(dtype)).latent_dist
        latents = (posterior.mean + posterior.std * vae_noise.to(dtype)) * pipe.vae.config.scaling_factor
    scheduler = model.noise_scheduler
    noisy = scheduler.add_noise(latents, noise.to(dtype), timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise.to(dtype), timesteps)
    else:
        target = noise
    if teacher is not None:
        with torch.no_grad():
            target = teacher(noisy, timesteps)
    hidden = _encode_prompt(models.text, input_ids.to(device), len(subjects), len(images))
    if styles is None:
        prediction = models.unet(noisy, timesteps, hidden)
    else:
        generator = step_generator(subjects[0].seed + 1, step, micro)  # apart from the batch's own draws
        *extended, rows = styles.extend(model, noisy, timesteps, hidden, generator)
        prediction = models.unet(*extended)
        style_loss = styles.loss(model, prediction, rows)
        prediction = prediction[:len(noisy)]
    per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(1)
    losses = per_sample.view(config.batch_size, len(subjects)).mean(0)
    return losses if styles is None else losses + style_loss


def _encode_prompt(encode, input_ids: Tensor, subjects: int, samples: int) -> Tensor:
    """The prompt's hidden states for every sample of the batch; ``encode(input_ids)`` gives them.

    With one subject every copy sees the same prompt through the same text encoder, so it is encoded
    once and broadcast (the gradient sums over the copies as before, at 1/batch of the encoder's work);
    several subjects carry per-sample adapters in the encoder, so each sample is encoded on its own.
    """
    if subjects == 1:
        return encode(input_ids).expand(samples, -1, -1)
    return encode(input_ids.repeat(samples, 1))


def clip_per_subject(trainable: Trainable, max_norm: float) -> None:
    """Clip each subject's gradient on its own, so batching never couples subjects."""
    grads = [p.grad for p in trainable.parameters if p.grad is not None]
    if not grads:
        return
    if trainable.num_subjects == 1:
        torch.nn.utils.clip_grad_norm_(trainable.parameters, max_norm)
        return
    # a Tensor: grads is not empty (typeshed types sum()'s start, 0, into its result)
    squared = cast(Tensor, sum(g.float().pow(2).flatten(1).sum(1) for g in grads))
    factors = (max_norm / (squared.sqrt() + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(factors.view(-1, *([1] * (grad.dim() - 1))).to(grad.dtype))
