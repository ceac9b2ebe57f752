"""Tests for the shipped TinyFaces text-to-image model and its training code."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from lowdim_tinyfaces import model_path  # noqa: E402
from lowdim_tinyfaces.train_config import (  # noqa: E402
    IDENTIFIER,
    TrainConfig,
    build_text_encoder,
    build_tokenizer,
    build_train_scheduler,
    build_unet,
    build_vae,
    tokenizer_words,
    training_prompts,
)
from lowdim_tinyfaces.train_state import (  # noqa: E402
    load_optimizer_tensors,
    optimizer_tensors,
)
from lowdim_tinyfaces.train_steps import diffusion_loss, render_batch, vae_loss  # noqa: E402

MAX_MB = 30


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors: a second thread only adds synchronisation, worst on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _exported() -> bool:
    return (model_path() / "model_index.json").exists()


@pytest.mark.skipif(not _exported(), reason="model not exported yet (run train_model)")
def test_exported_model_loads_and_generates() -> None:
    from diffusers import StableDiffusionPipeline

    size = sum(f.stat().st_size for f in model_path().rglob("*") if f.is_file())
    assert size <= MAX_MB * 2**20, size
    pipe = StableDiffusionPipeline.from_pretrained(model_path()).to(dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a photo of a face", num_inference_steps=2, guidance_scale=4.0,
               generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (1, 32, 32, 3)
    assert (out.images >= 0).all() and (out.images <= 1).all()


def test_prompts_never_contain_identifier(tmp_path) -> None:
    assert all(IDENTIFIER not in p.split() for p in training_prompts())
    tok = build_tokenizer(tmp_path, 77)
    # Every training word is one whole token (bos + word + eos); "pop-art" is three words
    # to CLIP's pre-tokenizer ("pop", "-", "art").
    for word in tokenizer_words():
        assert len(tok(word).input_ids) == 3 + 2 * word.count("-"), word
    assert len(tok(IDENTIFIER).input_ids) > 3  # "sks" is rare: split into byte-level pieces


def _micro():
    """Smaller than TrainConfig.micro(): these tests must stay fast on a busy 2-core box."""
    torch.manual_seed(0)
    cfg = TrainConfig().micro()
    cfg.vae = {**cfg.vae, "block_out_channels": [8, 8, 8], "norm_num_groups": 4}
    cfg.unet = {**cfg.unet, "block_out_channels": [16, 16], "norm_num_groups": 4,
                "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "attention_head_dim": 4}
    cfg.text = {**cfg.text, "hidden_size": 16, "intermediate_size": 32, "projection_dim": 16,
                "num_attention_heads": 2}
    return cfg, build_vae(cfg), build_unet(cfg), build_text_encoder(cfg)


def test_diffusion_step_decreases_loss_on_fixed_batch(tmp_path) -> None:
    cfg, _, unet, text_encoder = _micro()
    tok = build_tokenizer(tmp_path, 16)
    ids = tok(training_prompts() + [""], padding="max_length", max_length=16,
              return_tensors="pt").input_ids
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    index = torch.tensor([0, 2, 6])
    sched = build_train_scheduler()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3)
    losses = []
    for _ in range(6):
        # Same noise and timesteps every step: a fixed batch the model can fit.
        gen = torch.Generator().manual_seed(2)
        loss = diffusion_loss(unet, text_encoder, latents, ids, index, sched, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses


def test_vae_step_decreases_loss() -> None:
    cfg, vae, _, _ = _micro()
    images, _ = render_batch(0, 1, 0, 2, 32)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        parts = vae_loss(vae, images, 1e-6, torch.Generator().manual_seed(0))
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        losses.append(parts["l1"].item())
    assert losses[-1] < losses[0], losses


def test_render_batch_is_a_function_of_step() -> None:
    a, sa = render_batch(0, 2, 5, 3, 32)
    b, sb = render_batch(0, 2, 5, 3, 32)
    c, _ = render_batch(0, 2, 6, 3, 32)
    assert torch.equal(a, b) and (sa == sb).all()
    assert not torch.equal(a, c)


def test_optimizer_state_round_trips_through_safetensors() -> None:
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    tensors, groups = optimizer_tensors(opt)
    other = torch.optim.AdamW(net.parameters(), lr=5.0)
    load_optimizer_tensors(other, tensors, groups)
    a, b = opt.state_dict(), other.state_dict()
    assert b["param_groups"][0]["lr"] == pytest.approx(1e-2)
    for idx, st in a["state"].items():
        for key, value in st.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][idx][key]))
