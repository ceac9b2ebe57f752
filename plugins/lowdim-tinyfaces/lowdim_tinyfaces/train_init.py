"""Warm start of stage 2 from an exported TinyFaces folder (``train_model --init-from``).

Retraining with another caption vocabulary from scratch costs two CPU hours; starting from the
shipped model keeps its VAE (stage 1 is skipped), its UNet and its text encoder, and only the
token-embedding table is rebuilt for the new vocabulary: rows of tokens both vocabularies share
are copied by token string, new tokens keep their fresh initialisation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lowdim import json_text

from .train_config import TrainConfig, build_text_encoder, build_unet

TOKEN_TABLE = "embeddings.token_embedding.weight"


def load_vae(model_dir: Path):
    from diffusers import AutoencoderKL

    from lowdim_sd.loading import dtype_keyword

    loaded = AutoencoderKL.from_pretrained(model_dir / "vae", use_safetensors=True, **{dtype_keyword(): torch.float32})
    # Rebuilt from its public config, as the UNet and text encoder are in warm_start: from_pretrained
    # records the folder it read as ``_name_or_path``, which the export would then carry.
    vae = AutoencoderKL.from_config({k: v for k, v in loaded.config.items() if not k.startswith("_")})
    vae.load_state_dict(loaded.state_dict())
    return vae.eval().requires_grad_(False)


def remap_token_table(old_table: torch.Tensor, old_vocab: dict[str, int], new_table: torch.Tensor,
                      new_vocab: dict[str, int]) -> tuple[torch.Tensor, int]:
    """``new_table`` with every token the old vocabulary also has copied from ``old_table``."""
    table = new_table.clone()
    shared = [(new_vocab[token], index) for token, index in old_vocab.items() if token in new_vocab]
    if shared:
        new_rows, old_rows = (torch.tensor(rows) for rows in zip(*shared, strict=True))
        table[new_rows] = old_table[old_rows].to(table.dtype)
    return table, len(shared)


def warm_start(cfg: TrainConfig, model_dir: Path, tokenizer,
               log: Callable[[str], None]) -> tuple[nn.Module, nn.Module]:
    """UNet and text encoder built for ``cfg`` and loaded from ``model_dir``'s exported weights."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = build_unet(cfg)
    unet.load_state_dict(UNet2DConditionModel.from_pretrained(model_dir / "unet", use_safetensors=True).float()
                         .state_dict())
    old_text = CLIPTextModel.from_pretrained(model_dir / "text_encoder", use_safetensors=True).float().state_dict()
    vocab = tokenizer.get_vocab()
    text_encoder = build_text_encoder(cfg, len(vocab))
    old_vocab = json_text.loads((model_dir / "tokenizer" / "vocab.json").read_text())
    key = next(name for name in old_text if name.endswith(TOKEN_TABLE))  # "text_model." before transformers 5.6
    table, copied = remap_token_table(old_text.pop(key), old_vocab, text_encoder.state_dict()[key], vocab)
    text_encoder.load_state_dict({**old_text, key: table})
    log(f"warm start from {model_dir}: {copied} of {len(table)} token rows copied, "
        f"{len(table) - copied} new")
    return unet, text_encoder
