"""The module tree of whatever ``--model`` names, for counting (``lowdim inspect``) without the weights.

A registered model has its own skeleton. A diffusers folder or a hub id is built on the meta device
from its two small config files (unet/config.json, text_encoder/config.json), so nothing big is read
or downloaded. A single-file checkpoint is built from ``--model-config`` (a folder, a hub id or a
registered name) when given; otherwise it is loaded, since only its weights say which SD1.x variant it is.
A hub id is looked up in the local cache alone unless the hub answers at once: offline, huggingface_hub
would otherwise retry for half a minute, printing each retry, before the same answer.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lowdim import hub  # hub.hub_reachable looked up at each call, so a test can declare it False
from lowdim.errors import first_line
from lowdim.paths import expand_user
from lowdim_sd.architecture import component_tree
from lowdim_sd.loading import ModelLoadError, config_source, hub_id_not_found, load_sd, quiet_libraries


def component_configs(source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(UNet config, text encoder config) of a diffusers folder or hub id: two JSON files, no weights."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig

    folder = expand_user(source)
    if hub.looks_like_path(source) and not folder.is_dir():
        raise ModelLoadError(f"{source}: no such model folder")
    # a 3 s connection check first: looked up unreachable, the hub costs ~30 s of retries before failing
    offline = not folder.is_dir() and not hub.hub_reachable()
    try:
        with quiet_libraries(), _library_offline(offline), warnings.catch_warnings():
            # diffusers still passes huggingface_hub an argument it deprecated: noise, not for our users
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks")
            unet = UNet2DConditionModel.load_config(source, subfolder="unet", local_files_only=offline)
            text = CLIPTextConfig.from_pretrained(source, subfolder="text_encoder", local_files_only=offline)
    except (OSError, ValueError) as error:
        raise _unreadable(source, folder, offline, error) from None
    return unet, text.to_dict()


@contextlib.contextmanager
def _library_offline(offline: bool) -> Iterator[None]:
    """Tell huggingface_hub what we found: even with local_files_only it goes online to build its request
    headers (a user-agent registry, up to 3 s more offline); in offline mode it makes no request at all."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:  # as it was: a program that imports lowdim keeps its own setting
        constants.HF_HUB_OFFLINE = before


def _unreadable(source: str, folder: Path, offline: bool, error: Exception) -> ModelLoadError:
    """Why the configs could not be read, in the terms of what ``source`` is."""
    if offline:
        return hub_id_not_found(source)  # what personalize and the other commands say
    reason = first_line(error)
    # diffusers names config.json without the unet/ folder it looked in: that reason would contradict ours
    detail = "" if "config.json" in reason else f" ({reason})"
    if folder.is_dir():
        return ModelLoadError(f"{folder}: not a diffusers model folder, no readable unet/config.json and "
                              f"text_encoder/config.json in it{detail}")
    return ModelLoadError(f"could not read unet/config.json and text_encoder/config.json of the hub id '{source}': "
                          f"not a diffusers SD1.x model, or a misspelt or private id{detail}")


def build_on_meta(unet_config: dict[str, Any], text_config: dict[str, Any]) -> nn.ModuleDict:
    """UNet and text encoder under lowdim's layer-name roots, on the meta device: the tree, no memory."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        return component_tree(unet, CLIPTextModel(CLIPTextConfig(**text_config)))


def model_skeleton(model: str, model_config: str | None = None) -> nn.Module:
    """The ``{"unet", "text_encoder"}`` tree of ``model``: a diffusers folder, a hub id or a single file."""
    path = expand_user(model)
    if path.is_file():
        if model_config is None:  # which SD1.x variant it is, only its weights say
            return load_sd(model, "cpu", "fp16").modules
        # a registered name stands for its folder or hub id, as for the commands that load the model
        return build_on_meta(*component_configs(config_source(model, model_config)))
    if not path.exists() and (path.suffix or hub.looks_like_path(model)):  # as load_sd: no hub lookup for a path
        raise ModelLoadError(f"{model}: no such model file or folder")
    if (path / "model_index.json").is_file():  # an SDXL folder's sizes are no SD1.x model's, as a load refuses it
        from lowdim_sd.pipeline_parts import check_sd1
        from lowdim_sd.weights_folder import read_config_json

        check_sd1(path, read_config_json(path / "model_index.json"), str(path))
    return build_on_meta(*component_configs(str(path) if path.exists() else model))


def path_backend(model: str, model_config: str | None = None) -> Any:
    """An SD1.x backend for a model given by path or hub id rather than by a registered name."""
    from lowdim_sd.plugin import SDBackend

    return SDBackend(model, model, skeleton=lambda: model_skeleton(model, model_config))
