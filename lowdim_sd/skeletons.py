"""The module tree of whatever ``--model`` names, for counting (``lowdim inspect``) without the weights.

A registered model has its own skeleton. A diffusers folder or a hub id is built on the meta device
from its two small config files (unet/config.json, text_encoder/config.json), so nothing big is read
or downloaded. A single-file checkpoint is built from ``--model-config`` when given; otherwise it
is loaded, since only its weights say which SD1.x variant it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lowdim.errors import first_line
from lowdim_sd.architecture import component_tree
from lowdim_sd.loading import ModelLoadError, load_sd


def component_configs(source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(UNet config, text encoder config) of a diffusers folder or hub id: two JSON files, no weights."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig

    try:
        unet = UNet2DConditionModel.load_config(source, subfolder="unet")
        text = CLIPTextConfig.from_pretrained(source, subfolder="text_encoder").to_dict()
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not read the configs of '{source}' (unet/config.json, text_encoder/"
                             f"config.json): not a diffusers model folder, or a hub id neither cached nor "
                             f"reachable ({first_line(error)})") from None
    return unet, text


def build_on_meta(unet_config: dict[str, Any], text_config: dict[str, Any]) -> nn.ModuleDict:
    """UNet and text encoder under lowdim's layer-name roots, on the meta device: the tree, no memory."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        return component_tree(unet, CLIPTextModel(CLIPTextConfig(**text_config)))


def model_skeleton(model: str, model_config: str | None = None) -> nn.Module:
    """The ``{"unet", "text_encoder"}`` tree of ``model``: a diffusers folder, a hub id or a single file."""
    path = Path(model).expanduser()
    if path.is_file():
        if model_config is None:  # which SD1.x variant it is, only its weights say
            return load_sd(model, "cpu", "fp16").modules
        return build_on_meta(*component_configs(model_config))
    if not path.exists() and (path.suffix or model.startswith((".", "/", "~"))):
        raise ModelLoadError(f"{model}: no such model file or folder")
    return build_on_meta(*component_configs(str(path) if path.exists() else model))


def path_backend(model: str, model_config: str | None = None) -> Any:
    """An SD1.x backend for a model given by path or hub id rather than by a registered name."""
    from lowdim_sd.plugin import SDBackend

    return SDBackend(model, model, skeleton=lambda: model_skeleton(model, model_config))
