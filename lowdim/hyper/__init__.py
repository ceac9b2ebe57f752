"""Hypernetworks that predict an adapter from one image (HyperDreamBooth §4.2).

    net = HyperNetwork(HyperConfig(encoder_config=vit_config), space, adapters.info("default").layers)
    params = net(images)                                # {layer: {param: (B, *shape)}}
    with adapters.override("default", params):
        loss = diffusion_loss(model, images)            # gradients flow into net
"""

from typing import TYPE_CHECKING

from lowdim._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ below loads each on first use
    from lowdim.hyper.config import HyperConfig
    from lowdim.hyper.encoder import TINY_ENCODER, ImageEncoder
    from lowdim.hyper.head import HyperHead
    from lowdim.hyper.network import HyperNetwork, build_hypernet, weight_loss
    from lowdim.hyper.storage import load_hypernet, save_hypernet

# Loaded on first use: importing lowdim.hyper.builtin (a plugin module) must not import torch. At run time only:
# a checker that sees a module __getattr__ takes any unknown name (a typo) for one of its results.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "lowdim.hyper.config": ("HyperConfig",),
        "lowdim.hyper.encoder": ("ImageEncoder", "TINY_ENCODER"),
        "lowdim.hyper.head": ("HyperHead",),
        "lowdim.hyper.network": ("HyperNetwork", "build_hypernet", "weight_loss"),
        "lowdim.hyper.storage": ("load_hypernet", "save_hypernet"),
    })
del lazy_exports

__all__ = ["TINY_ENCODER", "HyperConfig", "HyperHead", "HyperNetwork", "ImageEncoder", "build_hypernet",
           "load_hypernet", "save_hypernet", "weight_loss"]
