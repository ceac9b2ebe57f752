"""What one finetune step feeds the UNet and regresses it on, checked against the paper's denoising loss.

The other training tests compare two runs that share these draws and this arithmetic (batched against alone,
resumed against straight), so a mistake here sits on both sides of their comparisons. These tests spy on the
step itself: the scheduler's ``add_noise`` and the UNet call of ``denoising_losses`` on the tiny epsilon model.
"""

from __future__ import annotations

import pytest
import torch

from lowdim_sd.loading import load_sd
from lowdim_sd.train import Subject, TrainConfig, prompt_ids
from lowdim_sd.train_loss import denoising_losses, subject_draws

COPIES = 8  # TinyFaces' finetune: 8 noisy copies of the one reference per step
CONFIG = TrainConfig(batch_size=COPIES, augment=False)


class _Output:
    def __init__(self, sample: torch.Tensor):
        self.sample = sample


@pytest.fixture(scope="module")
def model(tiny_sd):
    return load_sd(str(tiny_sd))


@pytest.fixture
def ids(model):
    return model.pipe.tokenizer("a sks face", padding="max_length", max_length=77, return_tensors="pt").input_ids


@pytest.fixture
def spy(model, monkeypatch):
    """Records add_noise's arguments and what the UNet is given; the UNet answers with the true noise."""
    scheduler = model.noise_scheduler
    add_noise = scheduler.add_noise
    seen: dict = {}

    def record(latents, noise, timesteps):
        seen.update(latents=latents, noise=noise, timesteps=timesteps)
        return add_noise(latents, noise, timesteps)

    def unet(sample, timesteps, *args, **kwargs):
        seen.update(noisy=sample, unet_timesteps=timesteps)
        return _Output(seen["noise"])

    monkeypatch.setattr(scheduler, "add_noise", record)
    monkeypatch.setattr(model.pipe.unet, "forward", unet)
    return seen


def one_step(model, faces, ids, step=0, micro=0):
    with torch.no_grad():
        return denoising_losses(model, [Subject(faces[:1], seed=1)], CONFIG, step, micro, ids)


def test_an_epsilon_model_regresses_on_the_noise(model, faces, ids, spy):
    assert model.noise_scheduler.config.prediction_type == "epsilon"
    assert one_step(model, faces, ids).max() < 1e-8  # a UNet that predicts the true noise has zero loss


def test_each_copy_of_the_reference_gets_its_own_noise_and_its_own_timestep(model, faces, ids, spy):
    one_step(model, faces, ids)
    noise, timesteps = spy["noise"], spy["timesteps"]
    assert noise.shape[0] == COPIES and timesteps.shape == (COPIES,)
    rows = noise.flatten(1)
    for i in range(COPIES):
        for j in range(i + 1, COPIES):
            assert not torch.equal(rows[i], rows[j]), f"copies {i} and {j} share a noise draw"
    assert len(set(timesteps.tolist())) > 1, "every copy is noised at the same timestep"
    assert torch.equal(spy["unet_timesteps"], timesteps)


def test_timesteps_span_the_schedule_s_whole_range(model, faces, ids, spy):
    """800 draws of a uniform integer on [0, T): each bound below fails by chance with probability < 1e-30,
    and the draws are seeded by (seed, step, micro), so the test is the same on every run."""
    steps = model.pipe.scheduler.config.num_train_timesteps
    drawn = []
    for step in range(50):
        for micro in range(2):
            one_step(model, faces, ids, step, micro)
            assert len(set(spy["timesteps"].tolist())) > 1
            drawn.append(spy["timesteps"])
    timesteps = torch.cat(drawn).double()
    assert timesteps.min() >= 0 and timesteps.max() <= steps - 1
    assert timesteps.max() >= 0.9 * steps and timesteps.min() < 0.1 * steps
    assert abs(timesteps.mean() - (steps - 1) / 2) < 0.06 * steps  # 6 standard errors of the mean


def test_the_training_schedule_is_the_model_s_own(model, faces, ids, spy):
    """Training noises with the betas the pipeline samples with (SD's scaled_linear), not another curve."""
    sampling = model.pipe.scheduler
    torch.testing.assert_close(model.noise_scheduler.betas, sampling.betas, rtol=0, atol=0)
    one_step(model, faces, ids)
    alpha_bar = sampling.alphas_cumprod[spy["timesteps"]].view(-1, 1, 1, 1)
    expected = alpha_bar.sqrt() * spy["latents"] + (1 - alpha_bar).sqrt() * spy["noise"]
    torch.testing.assert_close(spy["noisy"], expected.to(spy["noisy"].dtype), atol=1e-5, rtol=1e-5)


def test_latents_are_the_vae_s_scaled_by_its_scaling_factor(model, faces, ids, spy, monkeypatch):
    """The posterior's spread is set to zero, so the step's latents are exactly its mean times the factor."""
    vae = model.pipe.vae
    factor = vae.config.scaling_factor
    assert factor != 1  # else the test could not tell a missing factor
    encode = vae.encode
    means = []

    def encode_without_spread(images, *args, **kwargs):
        out = encode(images, *args, **kwargs)
        out.latent_dist.std = torch.zeros_like(out.latent_dist.std)
        means.append(out.latent_dist.mean)
        return out

    monkeypatch.setattr(vae, "encode", encode_without_spread)
    one_step(model, faces, ids)
    torch.testing.assert_close(spy["latents"], means[0] * factor, atol=1e-6, rtol=1e-6)


def test_each_subject_draws_its_own_vae_noise_diffusion_noise_and_timesteps(model):
    """Subjects of different seeds noise differently in the same (step, micro): precompute without --shared-noise
    promises each identity its own noise, and batching must not make them share one draw."""
    from lowdim_sd.train_loss import subject_draws

    images = torch.zeros(1, 3, 16, 16)
    first = subject_draws(model, Subject(images, 1), CONFIG, 0, 0)
    second = subject_draws(model, Subject(images, 2), CONFIG, 0, 0)
    for index, what in ((1, "vae noise"), (2, "diffusion noise"), (3, "timesteps")):
        assert not torch.equal(first[index], second[index]), f"both subjects drew the same {what}"


def test_a_non_square_subject_s_loss_is_the_denoising_loss_of_its_own_shape(model, ids):
    """16x24 pictures (height x width): latents and both noises are (B, C, 8, 12), and the loss is the one
    computed step by step from the subject's own generator, in the draw order the engine documents."""
    from lowdim_sd.train_loss import step_generator

    pictures = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(5)) * 2 - 1
    config, seed, step = TrainConfig(batch_size=2, augment=False), 4, 3
    with torch.no_grad():
        loss = denoising_losses(model, [Subject(pictures, seed)], config, step, 0, ids)
        generator = step_generator(seed, step, 0)
        picked = pictures[torch.randint(0, 2, (2,), generator=generator)]
        pipe, factor = model.pipe, model.pipe.vae_scale_factor
        shape = (2, pipe.unet.config.in_channels, 16 // factor, 24 // factor)
        vae_noise, noise = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
        timesteps = torch.randint(0, pipe.scheduler.config.num_train_timesteps, (2,), generator=generator)
        posterior = pipe.vae.encode(picked).latent_dist
        latents = (posterior.mean + posterior.std * vae_noise) * pipe.vae.config.scaling_factor
        noisy = model.noise_scheduler.add_noise(latents, noise, timesteps)
        hidden = pipe.text_encoder(ids)[0].expand(2, -1, -1)
        expected = (pipe.unet(noisy, timesteps, hidden).sample - noise).pow(2).mean()
    assert latents.shape[-2:] == (8, 12)
    torch.testing.assert_close(loss, expected.view(1), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_a_small_error_is_measured_exactly_in_an_fp16_model_too(tiny_sd, faces, dtype, monkeypatch):
    """The squared error is taken in fp32 whatever the model's dtype: a UNet that answers the true noise plus
    1e-3 everywhere has loss (1e-3)**2 = 1e-6. Rounding prediction and target to fp16 first (an error of ~5e-4
    at |noise| ~ 1) would swamp it, as it would a late run's small losses and their gradients."""
    model = load_sd(str(tiny_sd), dtype=dtype)
    assert model.dtype == {"fp32": torch.float32, "fp16": torch.float16}[dtype]
    subject = Subject(faces[:1], seed=1)
    noise = subject_draws(model, subject, CONFIG, 0, 0)[2]  # the step's diffusion noise, drawn again on its own
    monkeypatch.setattr(model.pipe.unet, "forward", lambda sample, *args, **kwargs: _Output(noise + 1e-3))
    ids = prompt_ids(model, CONFIG)
    with torch.no_grad():
        losses = denoising_losses(model, [subject], CONFIG, 0, 0, ids)
    assert losses.item() == pytest.approx(1e-6, rel=1e-3)
