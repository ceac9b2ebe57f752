"""An encoder config given by a name (``named_encoder_config``: train-hypernet's --encoder-config tiny) is the same
config as the dict, wherever it is compared or stored, and its name is what the hypernetwork's file records as its
encoder; a label given as HyperConfig.encoder comes first, and a config given as it is records "inline config"
(FHS 5)."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
from safetensors import safe_open

import lowdim
from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet
from lowdim.hyper.config import encoder_config_name, named_encoder_config, normalize_encoder_config

TINY_VIT = {"model_type": "vit", "image_size": 16, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32}


def test_a_named_config_is_the_same_config_with_a_name():
    named = named_encoder_config("tiny", TINY_VIT)
    assert named == TINY_VIT and json.dumps(named) == json.dumps(TINY_VIT)  # a resume compares the JSON
    for kept in (normalize_encoder_config(named), copy.deepcopy(named), pickle.loads(pickle.dumps(named)),
                 HyperConfig.from_dict({"encoder_config": named}).encoder_config):
        assert encoder_config_name(kept) == "tiny" and kept == TINY_VIT
    assert encoder_config_name(normalize_encoder_config(TINY_VIT)) == ""
    given, plain = HyperConfig(encoder_config=named), HyperConfig(encoder_config=dict(TINY_VIT))
    assert given == plain and given.to_dict() == plain.to_dict()  # the file's hyper_config is the same JSON


def _recorded(path) -> str:
    with safe_open(str(path), "pt") as opened:
        return opened.metadata()["encoder"]


@pytest.mark.parametrize(("options", "recorded"), [
    ({"encoder_config": named_encoder_config("tiny", TINY_VIT)}, "tiny"),
    ({"encoder_config": TINY_VIT}, "inline config"),
    ({"encoder_config": named_encoder_config("tiny", TINY_VIT), "encoder": "my-vit"}, "my-vit"),  # the label first
])
def test_the_file_records_the_configs_name(tmp_path, options, recorded):
    config = HyperConfig(width=16, attention_heads=2, **options)
    net = HyperNetwork(config, lowdim.get_space("lora", {"rank": 1}), [lowdim.LayerSpec("a.to_q", 8, 8)])
    path = save_hypernet(tmp_path / "h.safetensors", net)
    assert _recorded(path) == recorded
    assert lowdim.hyper.load_hypernet(path).config.encoder_config["hidden_size"] == 16
