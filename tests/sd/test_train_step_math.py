"""What one finetune step feeds the UNet and regresses it on, checked against the paper's denoising loss.

The other training tests compare two runs that share these draws and this arithmetic (batched against alone,
resumed against straight), so a mistake here sits on both sides of their comparisons. These tests spy on the
step itself: the scheduler's ``add_noise`` and the UNet call of ``denoising_losses`` on the tiny epsilon model.
"""

from __future__ import annotations

import pytest
import torch

from lowdim_sd.loading import load_sd
from lowdim_sd.train import Subject, TrainConfig, denoising_losses

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
