"""What a hypernetwork file records and how `lowdim show` tells it: the retrieval head's file says what the
transformer head's says (the phrase, the bases, the weight folders by name), show describes each head by what it
has, and its use line is a command that runs."""

from __future__ import annotations

import json
import shlex
import warnings

import pytest
import torch
from hypertrain_jobs import TINY_VIT, job  # tests/sd, on the path as pytest puts it
from safetensors import safe_open

import lowdim
from lowdim_cli.main import main
from lowdim_sd.file_info import describe
from lowdim_sd.hypertrain import train_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("hyperdata"), "w", 3, seed=9, steps=1)


@pytest.fixture(scope="module")
def retrieval_file(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("retrieval") / "r"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loop options job() sets are ignored, with a warning
        made = train_hypernet(job(weights, out, val_identities=0, hyper={
            "encoder_config": TINY_VIT, "architecture": "retrieval", "encoder_pool": 2}), progress=False)
    return made.path


def _extra(path) -> dict:
    with safe_open(str(path), "pt") as handle:
        return json.loads(handle.metadata()["extra"])


def test_a_retrieval_file_records_the_phrase_bases_and_weights_by_name(retrieval_file, weights):
    extra = _extra(retrieval_file)
    index = json.loads((weights / "index.json").read_text())
    assert extra["prompt"] == index["config"]["prompt"] and extra["token"] == index["config"]["token"]
    assert extra["bases_checksum"] and extra["adapter_seed"] == index["seed"]
    assert extra["weights"] == "w"  # the folder's name, not the path it was given by
    assert extra["alpha"] == extra["beta"] == 0.0 and extra["steps"] == 0


def test_show_describes_a_retrieval_file_by_its_bank(retrieval_file):
    info = describe(retrieval_file)
    network = dict(info.rows)["network"]
    assert network == "architecture retrieval, bank_size 3, key_dim 0, encoder_pool 2"
    assert info.values["network"] == {"architecture": "retrieval", "bank_size": 3, "key_dim": 0, "encoder_pool": 2}


@pytest.fixture
def lora_unet_file(tiny_sd, tmp_path):
    """A hypernetwork for --space lora --set rank=2 on the UNet only: neither personalize's default."""
    from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet
    from lowdim.sizing import layer_specs
    from lowdim_sd.loading import load_sd
    from lowdim_sd.modes import resolve_layers

    layers = layer_specs(load_sd(str(tiny_sd)).modules, resolve_layers("unet"))
    config = HyperConfig(encoder_config=TINY_VIT, width=16, attention_heads=2, iterations=1)
    torch.manual_seed(0)
    net = HyperNetwork(config, lowdim.get_space("lora", {"rank": 2}), layers)
    return save_hypernet(tmp_path / "hyper lora.safetensors", net, {"model": str(tiny_sd), "layer_set": "unet"})


def test_shows_use_line_for_another_space_and_layer_set_runs(lora_unet_file, face, tmp_path, tiny_sd):
    use = describe(lora_unet_file).use
    assert "--space lora --set rank=2 --layers unet" in use
    words = shlex.split(use)
    assert words[:2] == ["lowdim", "personalize"]
    words = [str(face) if word == "face.jpg" else str(tmp_path / "me") if word == "me" else word for word in words]
    assert main([*words[1:], "--steps", "1", "--no-preview", "--no-crop", "--device", "cpu"]) == 0
    assert (tmp_path / "me" / "adapter.safetensors").is_file()


def test_a_transformer_file_of_the_defaults_gets_the_plain_use_line(make_hypernet, tiny_sd):
    path = make_hypernet(2)
    use = describe(path).use
    assert "--space" not in use and "--layers" not in use and "--set" not in use
    assert dict(describe(path).rows)["network"] == "architecture transformer, width 16, decoder_layers 2, iterations 2"


def test_personalize_on_another_space_names_the_options_that_fit(lora_unet_file, face, tmp_path, tiny_sd, capsys):
    code = main(["personalize", "-m", str(tiny_sd), "--hypernet", str(lora_unet_file), "-i", str(face), "-o",
                 str(tmp_path / "x"), "--layers", "unet", "--steps", "1", "--no-preview", "--no-crop", "--device",
                 "cpu"])
    said = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "(the file predicts --space lora --set rank=2)" in said
