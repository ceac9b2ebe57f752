"""A hypernetwork file's own bounds (review BS17, BS19): a layer list past 16 MB is refused before it is parsed, as
an adapter's is, and a head whose layer names no file can hold is refused when saving, so no file is written that
every later load refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors_edit import rewrite

import lowdim
from lowdim import json_text
from lowdim.errors import LowdimError
from lowdim.filecheck import MAX_INFLATED
from lowdim.hyper.storage import read_hypernet
from lowdim.spaces.base import LayerSpec

transformers = pytest.importorskip("transformers")


def hypernet(layers: list[LayerSpec]):
    from lowdim.hyper import HyperConfig, HyperNetwork

    torch.manual_seed(0)
    encoder = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64)
    config = HyperConfig(encoder_config=transformers.ViTConfig(**encoder), width=32, attention_heads=4,
                         feedforward=64, iterations=1)
    return HyperNetwork(config, lowdim.get_space("lidb", a=6, b=5), layers)


@pytest.fixture
def hyper_file(tmp_path) -> Path:
    from lowdim.hyper import save_hypernet

    net = hypernet([LayerSpec("q", 16, 8), LayerSpec("o", 12, 12)])
    return save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd", "layer_set": "qo"}, adapter_seed=0)


def test_a_hypernet_layer_list_past_16_mb_is_refused_before_it_is_parsed(hyper_file, monkeypatch):
    rewrite(hyper_file, layers="[" + "0," * (MAX_INFLATED // 2) + "0]")
    parse = json_text.loads
    monkeypatch.setattr(json_text, "loads", lambda text, **k: pytest.fail("parsed") if len(text) > 1e6 else parse(text))
    for read in (read_hypernet, lowdim.hyper.load_hypernet):
        with pytest.raises(LowdimError) as refused:
            read(hyper_file)
        assert str(refused.value) == (f"{hyper_file}: the layer list in the metadata is longer than 16 MB; "
                                      f"refusing it")


def test_a_hypernet_layer_list_just_within_the_bound_is_read_as_far_as_its_entries(hyper_file):
    listed = '[["q",16,8],["o",12,12]]'
    rewrite(hyper_file, layers=listed + " " * (MAX_INFLATED - len(listed)))  # JSON may pad; the bound is inclusive
    assert [layer.name for layer in read_hypernet(hyper_file).stored["layers"]] == ["q", "o"]


@pytest.mark.parametrize(("name", "problem"), [("a..b", "has an empty part"), (".q", "has an empty part"),
                                               ("q\nx", "holds a control character")])
def test_saving_a_head_whose_layer_names_no_file_holds_is_refused_and_writes_nothing(tmp_path, name, problem):
    from lowdim.hyper import save_hypernet

    net = hypernet([LayerSpec(name, 16, 8)])  # a head is made from LayerSpecs, not through Adapters.add's check
    path = tmp_path / "hyper.safetensors"
    with pytest.raises(LowdimError) as refused:
        save_hypernet(path, net, {"model": "tiny-sd", "layer_set": "q"}, adapter_seed=0)
    said = str(refused.value)
    assert said.startswith(f"{path}: the hypernetwork's layer ") and problem in said and "rename that module" in said
    assert not path.exists() and list(tmp_path.iterdir()) == []
