"""Stable Diffusion 1.x architecture, known without downloading anything.

The configs are SD1.5's published ones (UNet2DConditionModel and the CLIP ViT-L/14 text
encoder), so ``skeleton()`` can build the exact module tree on the meta device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lowdim.injection.select import LayerSet

if TYPE_CHECKING:  # the plugin module reads LAYER_SETS at import: `lowdim --help` needs no torch
    from torch import nn

SD15_UNET_CONFIG = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}

SD15_TEXT_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}

_ATTN_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
_TEXT_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _unet_patterns(attn: str) -> tuple[str, ...]:
    return tuple(f"unet.*.{attn}.{proj}" for proj in _ATTN_PROJECTIONS)


UNET_SELF = _unet_patterns("attn1")
UNET_CROSS = _unet_patterns("attn2")
TEXT = tuple(f"text_encoder.*.self_attn.{proj}" for proj in _TEXT_PROJECTIONS)

LAYER_SETS = {
    "unet+text": LayerSet("unet+text", UNET_SELF + UNET_CROSS + TEXT,
                          description="UNet self- and cross-attention plus CLIP text attention (the paper's set)"),
    "unet": LayerSet("unet", UNET_SELF + UNET_CROSS, description="UNet self- and cross-attention q, k, v, out"),
    "unet-self": LayerSet("unet-self", UNET_SELF, description="UNet self-attention (attn1) q, k, v, out"),
    "unet-cross": LayerSet("unet-cross", UNET_CROSS, description="UNet cross-attention (attn2) q, k, v, out"),
    "text": LayerSet("text", TEXT, description="CLIP text-encoder self-attention q, k, v, out"),
}


def layer_group(layer_name: str) -> str:
    if layer_name.startswith("text_encoder.") and layer_name.endswith("token_embedding"):
        return "text encoder token embedding"  # Textual Inversion's rows
    if layer_name.startswith("text_encoder."):
        return "text encoder attention"
    if ".attn1." in layer_name:
        return "unet self-attention"
    if ".attn2." in layer_name:
        return "unet cross-attention"
    return layer_name.split(".")[0]


def text_encoder_root(text_encoder: nn.Module) -> nn.Module:
    """The module the text encoder's layer names are taken from: CLIPTextModel itself on transformers >= 5.6,
    its only child ``text_model`` before. Layer names, and the frozen bases seeded from them, are then the
    same on every transformers version, so an adapter file made under one loads under any other."""
    children = dict(text_encoder.named_children())
    return children["text_model"] if list(children) == ["text_model"] else text_encoder


def component_tree(unet: nn.Module, text_encoder: nn.Module) -> nn.ModuleDict:
    """UNet and text encoder under the names every lowdim layer name starts with."""
    from torch import nn

    return nn.ModuleDict({"unet": unet, "text_encoder": text_encoder_root(text_encoder)})


def build_components(unet_config: dict, text_config: dict) -> nn.ModuleDict:
    """A fresh UNet and text encoder from their configs, as ``component_tree`` names them."""
    # mypy reads the top-level name as a dummy, not a Module
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return component_tree(UNet2DConditionModel(**unet_config), CLIPTextModel(CLIPTextConfig(**text_config)))


def sd15_skeleton() -> nn.ModuleDict:
    """SD1.5's UNet and text encoder on the meta device: the full module tree, no memory."""
    import torch

    with torch.device("meta"):
        return build_components(SD15_UNET_CONFIG, SD15_TEXT_CONFIG)
