"""Tiny SD-architecture pipelines built from config in-process: for tests, benchmarks and examples.

Same diffusers/transformers classes as SD1.5 (AutoencoderKL, UNet2DConditionModel, CLIPTextModel,
CLIPTokenizer, a DDPM/DDIM scheduler), with random weights and a tokenizer built from a word list,
so the real loading and training code paths run in seconds without any download.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from lowdim_sd.tokenizer import vocab_size, write_clip_tokenizer

TINY_WORDS = (
    "a", "photo", "of", "face", "pencil", "sketch", "pop-art", "poster", "at", "night", "on", "red", "background",
    "wearing", "hat", "person", "portrait", "painting", "in", "the", "style", "van", "gogh",
)

TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}

TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [16, 32],
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 16,
}

TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 77,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
}


def build_tiny_pipeline(seed: int = 0, words: tuple[str, ...] = TINY_WORDS, prediction_type: str = "epsilon"):
    """A randomly initialised StableDiffusionPipeline of ~0.5M parameters (16x16 images)."""
    return assemble_pipeline(TINY_UNET, TINY_TEXT, TINY_VAE, seed, words, prediction_type)


def assemble_pipeline(unet: dict, text: dict, vae: dict, seed: int = 0, words: tuple[str, ...] = TINY_WORDS,
                      prediction_type: str = "epsilon"):
    """A StableDiffusionPipeline of these UNet, CLIP text and VAE configs with random weights, SD1.5's
    scheduler settings and a tokenizer of ``words``. The token table has the text config's ``vocab_size``
    (SD1.5's 49,408, so its size is SD1.5's), else one row per word."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder, words))
    size = vocab_size(words)  # the two special tokens come last, as in CLIP's vocabulary
    config = CLIPTextConfig(**{"vocab_size": size, **text, "bos_token_id": size - 2, "eos_token_id": size - 1,
                               "pad_token_id": size - 1})
    text_encoder = CLIPTextModel(config)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                              clip_sample=False, set_alpha_to_one=False, prediction_type=prediction_type)
    return StableDiffusionPipeline(
        vae=AutoencoderKL(**vae), text_encoder=text_encoder, tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def save_tiny_pipeline(folder: str | Path, seed: int = 0, **kwargs) -> Path:
    """Write a tiny pipeline as a standard diffusers folder (what ``from_pretrained`` reads)."""
    folder = Path(folder)
    build_tiny_pipeline(seed, **kwargs).save_pretrained(folder)
    return folder
