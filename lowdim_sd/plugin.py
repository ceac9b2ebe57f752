"""Registers the SD1.x backend through lowdim's plugin hooks, like any third-party plugin."""

from __future__ import annotations

from torch import nn

from lowdim.backends import Backend
from lowdim.hookspecs import hookimpl
from lowdim_sd import architecture

SD15_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"


class SD15Backend(Backend):
    name = "sd15"
    aliases = ("sd1.5", "stable-diffusion-1.5")
    description = f"Stable Diffusion 1.5 ({SD15_HUB_ID}); UNet + CLIP ViT-L/14 text encoder"
    layer_sets = architecture.LAYER_SETS
    default_layer_set = "unet+text"

    def skeleton(self) -> nn.Module:
        return architecture.sd15_skeleton()

    def layer_group(self, layer_name: str) -> str:
        return architecture.layer_group(layer_name)


@hookimpl
def register_backends(register):
    register(SD15Backend())
