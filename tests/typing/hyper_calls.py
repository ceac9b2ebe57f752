"""docs/hypernetwork.md's calls, for a type checker to read (never run): what a head returns is the dict
``Adapters.override`` takes (a list of them with return_all=True), the config takes a transformers vision config
object, and a built or loaded head is typed. ``tests/test_typing_user_scripts.py`` runs mypy on it."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import ViTConfig
from typing_extensions import assert_type

import lowdim
from lowdim.hyper import HyperConfig, HyperHead, HyperNetwork, build_hypernet, load_hypernet, weight_loss
from lowdim.hyper.layout import LayerTensors
from lowdim.hyper.retrieval import RetrievalHead


def train_step(unet: nn.Module, images: Tensor, return_all: bool) -> Tensor:
    adapters = lowdim.inject(unet, lowdim.get_space("lidb", a=4, b=4), ["0"], batch=None)
    info = adapters.info("default")
    config = HyperConfig(encoder_config=ViTConfig(image_size=32, hidden_size=32), width=32)
    net = HyperNetwork(config, info.space, info.layers)
    iterates = net(images, return_all=True)
    assert_type(iterates, list[LayerTensors])
    with adapters.override("default", iterates[-1]):
        denoise: Tensor = unet(images)
    assert_type(net(images), LayerTensors)
    assert_type(net(images, 2, return_all=False), LayerTensors)
    assert_type(net.forward(images), LayerTensors)
    assert_type(net.forward(images, return_all=True)[0], LayerTensors)
    assert_type(net(images, return_all=return_all), LayerTensors | list[LayerTensors])
    with adapters.override("default", net.forward(images)):
        pass
    target = adapters.tensors("default")
    return denoise.mean() + sum(weight_loss(theta, target) for theta in iterates) / len(iterates)


def heads(images: Tensor, config: HyperConfig, unet: nn.Module) -> None:
    info = lowdim.inject(unet, lowdim.get_space("lidb"), ["0"]).info()
    built = build_hypernet(config, info.space, info.layers)
    assert_type(built, HyperHead)
    assert_type(built.config, HyperConfig)
    assert_type(built.eval()(images), LayerTensors)
    loaded = load_hypernet("net.safetensors", space=info.space, layers=info.layers)
    assert_type(loaded(images, return_all=True), list[LayerTensors])
    assert_type(loaded.metadata, dict[str, Any])
    retrieval = RetrievalHead(config, info.space, info.layers)
    assert_type(retrieval(images), LayerTensors)
    assert_type(retrieval(None, features=images, return_all=True), list[LayerTensors])
    head: nn.Module = built  # any head is still an nn.Module
    print(head)
