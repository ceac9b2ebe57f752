"""``load_hypernet`` from Python: the network it returns predicts as ``personalize`` does (eval mode: dropout off,
so two calls on one image agree), and a layer-set mismatch names the parameter, not a CLI flag."""

from __future__ import annotations

import pytest
import torch

import lowdim
from lowdim import option_words
from lowdim.errors import LowdimError
from lowdim.hyper import HyperConfig, HyperNetwork, load_hypernet, save_hypernet
from lowdim.spaces.base import LayerSpec

transformers = pytest.importorskip("transformers")

LAYERS = [LayerSpec("q", 16, 8), LayerSpec("o", 12, 12)]


def saved(tmp_path, **options) -> str:
    torch.manual_seed(0)
    encoder = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64)
    config = HyperConfig(encoder_config=encoder, width=32, attention_heads=4, feedforward=64, iterations=2,
                         head_init_scale=1.0, **options)
    net = HyperNetwork(config, lowdim.get_space("lora", rank=2), LAYERS)
    return save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd", "layer_set": "qkvo"})


def test_a_loaded_network_is_ready_to_predict_with_dropout_off(tmp_path):
    net = load_hypernet(saved(tmp_path, dropout=0.5))
    assert not net.training
    image = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        first, second = net(image), net(image)
    assert all(torch.equal(first[layer][name], second[layer][name]) for layer in first for name in first[layer])


def test_a_layer_set_mismatch_names_the_parameter_from_python_and_the_flag_on_the_command_line(tmp_path):
    path = saved(tmp_path)
    with pytest.raises(LowdimError) as refused:
        load_hypernet(path, layer_set="unet")
    assert "layer_set: file 'qkvo', expected 'unet' (the file predicts layer_set='qkvo')" in str(refused.value)
    assert "--" not in str(refused.value)
    with option_words.command_line(), pytest.raises(LowdimError) as refused:
        load_hypernet(path, layer_set="unet")
    assert "layer_set: file 'qkvo', expected 'unet' (the file predicts --layers qkvo)" in str(refused.value)
