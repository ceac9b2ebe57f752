"""Hostile and broken hypernetwork files: the configs in the header are bounded and checked against the
file's own tensors on the meta device before anything real is built, the encoder is never fetched
from the hub unless the caller names it, and every tensor must be finite floats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from safetensors_edit import rewrite

import lowdim
from lowdim.errors import LowdimError
from lowdim.hyper import HyperConfig, HyperNetwork, load_hypernet, save_hypernet
from lowdim.spaces.base import LayerSpec

transformers = pytest.importorskip("transformers")

LAYERS = [LayerSpec("q", 16, 8), LayerSpec("o", 12, 12)]
ENCODER = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64)


@pytest.fixture
def hyper_file(tmp_path) -> Path:
    torch.manual_seed(0)
    config = HyperConfig(encoder_config=transformers.ViTConfig(**ENCODER), width=32, attention_heads=4,
                         feedforward=64, iterations=2)
    net = HyperNetwork(config, lowdim.get_space("lidb", a=6, b=5), LAYERS)
    return save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd", "layer_set": "qo"}, adapter_seed=0)


def header(path: Path, key: str) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()[key])


def with_encoder(path: Path, **changes) -> Path:
    """The file with its encoder config changed in both places the header stores it."""
    encoder = {**header(path, "encoder_config"), **changes}
    hyper = {**header(path, "hyper_config"), "encoder_config": encoder}
    return rewrite(path, encoder_config=json.dumps(encoder), hyper_config=json.dumps(hyper))


# -- 11: sizes in the configs --------------------------------------------------------------------
def test_an_absurd_encoder_depth_is_refused_before_anything_is_built(hyper_file):
    with_encoder(hyper_file, num_hidden_layers=10**7)
    with pytest.raises(LowdimError, match=r"hyper_config 'encoder_config.num_hidden_layers' is 10000000; lowdim "
                                          r"accepts at most 512"):
        load_hypernet(hyper_file)


def test_a_depth_one_past_the_bound_is_refused_before_anything_is_built(hyper_file, monkeypatch):
    """The depth bound (512) holds for every key naming layers, depth or blocks wherever the word stands in it, not
    only the wider bound of any other size (16 M), under which a depth builds for minutes."""
    def build(*args, **kwargs):
        raise AssertionError("a network was built from the file's configs")

    monkeypatch.setattr("lowdim.hyper.network.build_hypernet", build)
    with_encoder(hyper_file, num_hidden_layers=513)
    said = r"'encoder_config.num_hidden_layers' is 513; lowdim accepts at most 512 here$"
    with pytest.raises(LowdimError, match=said):
        load_hypernet(hyper_file)


def test_an_encoder_config_that_does_not_fit_the_stored_tensors_is_refused_without_allocating_it(hyper_file):
    # 2^20 wide: the real model would take tens of GB; its meta-device twin takes nothing.
    with_encoder(hyper_file, hidden_size=1 << 20, intermediate_size=1 << 22)
    with pytest.raises(LowdimError, match=r"tensor 'encoder.backbone.*' is \d-D .*, where the stored config expects"):
        load_hypernet(hyper_file)


def test_a_decoder_width_that_does_not_fit_the_tensors_is_refused(hyper_file):
    hyper = {**header(hyper_file, "hyper_config"), "width": 1 << 16, "attention_heads": 4}
    rewrite(hyper_file, hyper_config=json.dumps(hyper))
    with pytest.raises(LowdimError, match="where the stored config expects"):
        load_hypernet(hyper_file)


def test_layer_sizes_in_the_header_are_bounded(hyper_file):
    rewrite(hyper_file, layers=json.dumps([["q", 10**9, 8], ["o", 12, 12]]))
    with pytest.raises(LowdimError, match=r"layer q has size 1000000000x8 in the metadata"):
        load_hypernet(hyper_file)


# -- 12 and 16: tensors ---------------------------------------------------------------------------
def test_a_2d_tensor_where_3d_is_expected_is_named(hyper_file):
    rewrite(hyper_file, {"encoder.backbone.embeddings.cls_token": torch.zeros(1, 32)})
    with pytest.raises(LowdimError, match=r"tensor 'encoder.backbone.embeddings.cls_token' is 2-D \(1, 32\), where "
                                          r"the stored config expects 3-D \(1, 1, 32\)"):
        load_hypernet(hyper_file)


@pytest.mark.parametrize(("value", "message"), [
    (torch.full((2, 32), float("nan")), "holds NaN or Inf"),
    (torch.zeros(2, 32, dtype=torch.int64), "holds int64, not floats"),
])
def test_non_finite_or_non_float_tensors_are_refused_by_name(hyper_file, value, message):
    rewrite(hyper_file, {"position": value})
    with pytest.raises(LowdimError, match=f"tensor 'position' {message}"):
        load_hypernet(hyper_file)


def test_missing_tensors_are_listed(hyper_file):
    with safe_open(str(hyper_file), framework="pt") as handle:
        meta, kept = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys() if k != "position"}  # noqa: SIM118
    save_file(kept, str(hyper_file), metadata=meta)
    with pytest.raises(LowdimError, match="tensors do not fit the stored hypernetwork config .missing: position;"):
        load_hypernet(hyper_file)


# -- 14: never the hub unless asked ---------------------------------------------------------------
@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt to reach the hub is recorded (and fails)."""
    import lowdim.hyper.encoder as encoder_module

    attempts = []

    def pretrained(hub_id):
        attempts.append(hub_id)
        raise LowdimError(f"hub asked for {hub_id}")

    monkeypatch.setattr(encoder_module, "_pretrained_config", pretrained)
    return attempts


def test_a_file_without_its_encoder_config_never_goes_to_the_hub_unless_asked(hyper_file, no_hub):
    hyper = {**header(hyper_file, "hyper_config"), "encoder": "someone/evil-encoder", "encoder_config": None}
    rewrite(hyper_file, hyper_config=json.dumps(hyper), encoder_config="null", encoder="someone/evil-encoder")
    with pytest.raises(LowdimError, match="stores no encoder_config for its image encoder 'someone/evil-encoder', so "
                                          "rebuilding it would go to the hub; pass encoder='someone/evil-encoder'"):
        load_hypernet(hyper_file)
    assert no_hub == []
    with pytest.raises(LowdimError, match="hub asked for someone/evil-encoder"):
        load_hypernet(hyper_file, encoder="someone/evil-encoder")  # named on purpose: the hub may be asked
    assert no_hub == ["someone/evil-encoder"]


def test_configs_that_download_backbones_while_building_are_refused(hyper_file, no_hub):
    with_encoder(hyper_file, use_pretrained_backbone=True, backbone="someone/evil")
    with pytest.raises(LowdimError, match="sets 'use_pretrained_backbone', which downloads weights"):
        load_hypernet(hyper_file)
    assert no_hub == []


def test_package_weights_for_an_encoder_no_package_provides_are_refused(hyper_file):
    rewrite(hyper_file, encoder_weights="package")
    with pytest.raises(LowdimError, match="says its encoder 'google/vit-huge-patch14-224-in21k' comes from a package"):
        load_hypernet(hyper_file)


def test_the_untouched_file_still_loads_exactly(hyper_file):
    net = load_hypernet(hyper_file)
    with safe_open(str(hyper_file), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118
            assert torch.equal(net.state_dict()[key], handle.get_tensor(key)), key
