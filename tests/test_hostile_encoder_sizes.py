"""A hypernetwork file whose encoder_config holds a size below 1 (FBJ 2) is refused in one line naming the file and
the key before anything is built, and any other refusal of its configs by whatever builds the network (transformers,
a plugin's head) is one LowdimError naming the file, in the words ``lowdim show`` gives it; never torch's or
transformers' own error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors_edit import rewrite

import lowdim
from lowdim.errors import LowdimError
from lowdim.hyper import HyperConfig, HyperNetwork, load_hypernet, save_hypernet
from lowdim.spaces.base import LayerSpec
from lowdim_cli.main import main
from lowdim_sd.file_info import describe

transformers = pytest.importorskip("transformers")

ENCODER = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64)
CANNOT_BUILD = "its network cannot be built from the configs it records"


@pytest.fixture
def hyper_file(tmp_path) -> Path:
    torch.manual_seed(0)
    config = HyperConfig(encoder_config=transformers.ViTConfig(**ENCODER), width=32, attention_heads=4,
                         feedforward=64, iterations=1)
    net = HyperNetwork(config, lowdim.get_space("lidb", a=6, b=5), [LayerSpec("q", 16, 8)])
    return save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd", "layer_set": "q"}, adapter_seed=0)


def with_encoder(path: Path, **changes) -> Path:
    """The file with its encoder config changed in both places the header stores it."""
    with safe_open(str(path), framework="pt") as handle:
        stored = handle.metadata()
    encoder = {**json.loads(stored["encoder_config"]), **changes}
    hyper = {**json.loads(stored["hyper_config"]), "encoder_config": encoder}
    return rewrite(path, encoder_config=json.dumps(encoder), hyper_config=json.dumps(hyper))


@pytest.fixture
def nothing_built(monkeypatch):
    def build(*args, **kwargs):
        raise AssertionError("a network was built from the file's configs")

    monkeypatch.setattr("lowdim.hyper.network.build_hypernet", build)


@pytest.mark.parametrize(("key", "value"), [("hidden_size", -16), ("num_attention_heads", 0),
                                            ("intermediate_size", -1), ("patch_size", 0), ("image_size", -32),
                                            ("num_channels", 0), ("num_hidden_layers", -1)])
def test_a_size_below_one_in_the_encoder_config_is_refused_naming_the_key_before_building(hyper_file, nothing_built,
                                                                                          key, value):
    with_encoder(hyper_file, **{key: value})
    with pytest.raises(LowdimError) as refused:
        load_hypernet(hyper_file)
    assert str(refused.value).startswith(f"{hyper_file}: {CANNOT_BUILD} (encoder_config '{key}' is "
                                         f"{value}; ")


def test_a_negative_that_names_no_size_is_no_refusal(hyper_file):
    with_encoder(hyper_file, encoder_stride=-1)  # a sentinel where ViTModel reads none: the file loads as saved
    assert load_hypernet(hyper_file).config.encoder_config["encoder_stride"] == -1


def test_any_other_refusal_of_the_configs_while_building_is_one_line_naming_the_file(hyper_file):
    with_encoder(hyper_file, hidden_act="nope")  # transformers looks the activation up while building: KeyError
    with pytest.raises(LowdimError) as refused:
        load_hypernet(hyper_file)
    assert str(refused.value) == f"{hyper_file}: {CANNOT_BUILD} (KeyError: 'nope')"


@pytest.mark.parametrize("changes", [{"hidden_size": -16}, {"hidden_act": "nope"}], ids=["negative", "unknown"])
def test_show_and_the_load_say_the_same(hyper_file, changes, capsys):
    with_encoder(hyper_file, **changes)
    with pytest.raises(LowdimError) as refused:
        load_hypernet(hyper_file)
    assert dict(describe(hyper_file).rows)["problem"] == str(refused.value).removeprefix(f"{hyper_file}: ")
    assert main(["show", str(hyper_file)]) == 0 and "Traceback" not in capsys.readouterr().err



def test_a_refusal_of_lowdims_own_while_building_names_the_file(hyper_file):
    with_encoder(hyper_file, model_type="no-such-model")
    with pytest.raises(LowdimError) as refused:
        load_hypernet(hyper_file)
    assert str(refused.value) == f"{hyper_file}: unknown transformers model_type 'no-such-model' in encoder_config"


def test_a_size_below_one_in_a_sub_config_is_named_by_its_path():
    from lowdim.hyper.safety import size_floor_problem

    config = {"model_type": "clip", "label2id": {"small size": 0}, "vision_config": {"hidden_size": 0}}
    assert size_floor_problem(config, "encoder_config", "") == ("encoder_config 'vision_config.hidden_size' is 0; a "
                                                                "size must be at least 1")
    assert size_floor_problem({**config, "vision_config": {"hidden_size": 8, "num_hidden_layers": 0}},
                              "encoder_config", "") is None  # labels are names, not sizes; a depth may be 0
