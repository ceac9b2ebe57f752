"""Configs and model builders for training the TinyFaces text-to-image model.

The architecture is Stable Diffusion's (AutoencoderKL, UNet2DConditionModel,
CLIPTextModel, CLIPTokenizer) shrunk to 32x32 pixels / 8x8x4 latents, so the
exported folder loads with ``StableDiffusionPipeline.from_pretrained`` and any
SD personalisation code runs on it unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .captions import attribute_words
from .styles import STYLES, prompt_for

# The identifier users bind to a personal identity later (DreamBooth's "[V]").
IDENTIFIER = "sks"

GENERAL_WORDS = (
    "a", "an", "of", "the", "in", "with", "and", "face", "person", "portrait", "painting",
    "style", "photo", "picture", "man", "woman", "drawing", "image", "close", "up",
)


def training_prompts() -> list[str]:
    """One caption per style; the base model never sees the identifier token."""
    prompts = [prompt_for(style, "face") for style in STYLES]
    for p in prompts:
        # "sks" must stay unseen so personalisation can bind it to a new identity.
        assert IDENTIFIER not in p.split(), p
    return prompts


CAPTION_MODES = ("style", "attributes")


def tokenizer_words(captions: str = "style") -> list[str]:
    """Whole-word vocabulary: every word of every style prompt plus general words.

    ``captions="attributes"`` adds the words that describe faces (captions.py).
    """
    words = {w for p in training_prompts() for w in p.split()} | set(GENERAL_WORDS)
    if captions == "attributes":
        words |= attribute_words()
    assert IDENTIFIER not in words
    return sorted(words)


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; saved as JSON next to the checkpoints."""

    seed: int = 0
    image_size: int = 32
    vae_batch: int = 64
    unet_batch: int = 64
    vae_lr: float = 1e-3
    unet_lr: float = 3e-4
    kl_weight: float = 1e-6
    prompt_dropout: float = 0.1
    ema_decay: float = 0.999
    vae_fraction: float = 0.16  # share of the budget for stage 1 (measured: L1 0.06 in 12 min)
    reserve_minutes: float = 3.0  # kept back for final samples + export
    checkpoint_minutes: float = 3.0
    sample_minutes: float = 10.0
    latent_std_images: int = 4096
    max_text_length: int = 77  # SD's length; the cost is negligible at 8x8 latents
    # "style": captions name the style only (the first model); "attributes": they also name a
    # random subset of the face's hair, skin, eyes, glasses and beard (captions.py).
    captions: str = "style"
    # Stage 2 planned in steps (train_model --unet-steps) instead of minutes: reproducible from the command.
    unet_steps: int | None = None

    def __post_init__(self) -> None:
        if self.captions not in CAPTION_MODES:
            raise ValueError(f"captions={self.captions!r}: expected one of {', '.join(CAPTION_MODES)}")
    vae: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3,
            "block_out_channels": [32, 64, 64],  # 3 blocks = 2 downsamplings = factor 4
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 16,
            "sample_size": 32,
        }
    )
    unet: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "sample_size": 8,
            "in_channels": 4,
            "out_channels": 4,
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            # Measured: 5.9M params, 0.38 s/step at batch 64 on 2 idle cores; layers_per_block=2
            # doubles the step time for 8.8M params, so we prefer more steps.
            "block_out_channels": [64, 128, 128],
            "layers_per_block": 1,
            "attention_head_dim": 8,
            "norm_num_groups": 32,
        }
    )
    text: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "projection_dim": 128,
            "hidden_act": "quick_gelu",
        }
    )

    def micro(self) -> TrainConfig:
        """A toy-sized copy for tests and smoke runs."""
        cfg = dataclasses.replace(self, vae_batch=8, unet_batch=8, latent_std_images=64)
        cfg.vae = {**self.vae, "block_out_channels": [16, 16, 16], "norm_num_groups": 8}
        cfg.unet = {
            **self.unet,
            "block_out_channels": [32, 32, 32],
            "norm_num_groups": 8,
        }
        cfg.text = {**self.text, "hidden_size": 32, "intermediate_size": 64, "projection_dim": 32}
        return cfg


def build_tokenizer(folder: Path, max_length: int, captions: str = "style"):
    """Write CLIP tokenizer files for our vocabulary into ``folder`` and load them."""
    from transformers import CLIPTokenizer

    from lowdim_sd.tokenizer import write_clip_tokenizer

    write_clip_tokenizer(folder, tokenizer_words(captions), max_length=max_length)
    return CLIPTokenizer.from_pretrained(folder)


def write_bpe_files(folder: Path) -> None:
    """Write vocab.json and merges.txt from ``folder``'s tokenizer.json when saving left them out.

    transformers 5 saves a CLIPTokenizer as tokenizer.json alone, but transformers 4's CLIPTokenizer
    (what diffusers loads for model_index.json's "CLIPTokenizer") reads only vocab.json + merges.txt.
    Taken from tokenizer.json's own BPE model, so both give the same token ids.
    """
    from tokenizers import Tokenizer

    if (folder / "vocab.json").exists() or not (folder / "tokenizer.json").exists():
        return  # transformers 4 wrote them already
    Tokenizer.from_file(str(folder / "tokenizer.json")).model.save(str(folder))


def build_vae(cfg: TrainConfig):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**cfg.vae)


def build_text_encoder(cfg: TrainConfig, size: int | None = None):
    """``size``: the vocabulary of the tokenizer in use (default: what ``build_tokenizer`` writes today)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from lowdim_sd.tokenizer import vocab_size

    size = size or vocab_size(tokenizer_words(cfg.captions))
    # CLIP's convention: the two special tokens are the last ids; pad = eos.
    config = CLIPTextConfig(
        vocab_size=size,
        bos_token_id=size - 2,
        eos_token_id=size - 1,
        pad_token_id=size - 1,
        max_position_embeddings=cfg.max_text_length,
        **cfg.text,
    )
    return CLIPTextModel(config)


def build_unet(cfg: TrainConfig):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**cfg.unet, cross_attention_dim=cfg.text["hidden_size"])


def build_train_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
    )


def build_sample_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        steps_offset=1,
        clip_sample=False,
        set_alpha_to_one=False,
    )
