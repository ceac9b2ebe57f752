"""Tiny random CLIP and ViT folders that the paper's metrics load by path, shared by tests/eval's conftest and
tests/sd/test_paper_metrics_numbers.py (tests/sd cannot reach tests/eval's conftest)."""

from __future__ import annotations

from pathlib import Path

LAYERS = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2}


def save_tiny_clip(folder: Path, words: list[str], side: int, seed: int) -> Path:
    """A random CLIP (model, image processor for ``side``x``side`` pictures, a tokenizer of ``words``) in ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from lowdim_sd.tokenizer import vocab_size, write_clip_tokenizer

    torch.manual_seed(seed)
    size = vocab_size(words)
    # CLIP pools the text at the end-of-text token: its id must be the tokenizer's (the last two are specials).
    ids = {"bos_token_id": size - 2, "eos_token_id": size - 1, "pad_token_id": size - 1}
    config = CLIPConfig(text_config={**LAYERS, **ids, "vocab_size": size, "max_position_embeddings": 77},
                        vision_config={**LAYERS, "image_size": side, "patch_size": 8}, projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(folder)
    write_clip_tokenizer(folder, words)
    return folder


def save_tiny_vit(folder: Path, side: int, seed: int) -> Path:
    """A random ViT saved without an image processor: the DINO metric falls back to ImageNet preprocessing."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(image_size=side, patch_size=8, **LAYERS)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder
