"""Hypernetworks that predict an adapter from one image (HyperDreamBooth §4.2).

    net = HyperNetwork(HyperConfig(encoder_config=vit_config), space, adapters.info("default").layers)
    params = net(images)                                # {layer: {param: (B, *shape)}}
    with adapters.override("default", params):
        loss = diffusion_loss(model, images)            # gradients flow into net
"""

from lowdim.hyper.config import HyperConfig
from lowdim.hyper.encoder import ImageEncoder
from lowdim.hyper.network import HyperNetwork, build_hypernet, weight_loss
from lowdim.hyper.storage import load_hypernet, save_hypernet

__all__ = ["HyperConfig", "HyperNetwork", "ImageEncoder", "build_hypernet", "load_hypernet", "save_hypernet",
           "weight_loss"]
