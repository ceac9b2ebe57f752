"""Adapter and hypernetwork metadata edited by a stranger: JSON nested past the parser, configs of the wrong JSON
type, Unicode digits for a version, a layer listed twice or named with control characters, stray tensors, headers
whose sizes would cost minutes to honour. Each is one line naming the file and the field, layer or tensor,
refused before anything big is made (review BH)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.file_fit import format_version_problem
from lowdim.filecheck import MAX_INFLATED, checked_layers
from lowdim.layer_lists import pack_layers, unpack_layers
from lowdim.spaces.base import LayerSpec

DEEP_LIST = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000


def toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))


def saved(tmp_path: Path, space: str = "lora", store: bool = False, **options) -> Path:
    model = toy()
    adapters = lowdim.inject(model, lowdim.get_space(space, **options), ["0", "1"], seed=0)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    return lowdim.save_adapter(tmp_path / "toy.safetensors", model, store_bases=store)


def layers_of(path: Path) -> list[LayerSpec]:
    with safe_open(str(path), framework="pt") as handle:
        return unpack_layers(handle.metadata()["layers"], path)


# -- BH1: JSON nested too deeply is one line naming the field ---------------------------------------------
@pytest.mark.parametrize(("field", "said"), [("layers", "layer list"), ("space_config", "space_config"),
                                              ("scales", "scales")])
def test_deeply_nested_adapter_metadata_is_one_line_naming_the_field(tmp_path, field, said):
    path = rewrite(saved(tmp_path), **{field: DEEP_LIST})
    with pytest.raises(AdapterFileError, match=f"{path}: .*{said}") as error:
        lowdim.read_adapter(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("field", ["hyper_config", "space_config", "layers", "extra", "encoder_config"])
def test_deeply_nested_hypernet_metadata_is_one_line_naming_the_field(hyper_file, field):
    rewrite(hyper_file, **{field: DEEP_OBJECT})
    with pytest.raises(LowdimError, match=f"{hyper_file}: .*'{field}'.*nested too deeply"):
        lowdim.hyper.load_hypernet(hyper_file)


# -- BH2: a config of the wrong JSON type -----------------------------------------------------------------
@pytest.mark.parametrize("config", ["[1,2]", "5", "null"])
def test_an_adapter_space_config_that_is_no_object_is_named(tmp_path, config):
    path = rewrite(saved(tmp_path), space_config=config)
    with pytest.raises(AdapterFileError, match=f"{path}: the space_config in the metadata is not a JSON object"):
        lowdim.read_adapter(path)


@pytest.mark.parametrize("field", ["hyper_config", "space_config", "extra", "encoder_config"])
def test_a_hypernet_config_that_is_no_object_is_named(hyper_file, field):
    rewrite(hyper_file, **{field: "[1]"})
    with pytest.raises(LowdimError, match=f"{hyper_file}: .*'{field}' in the metadata is not a JSON object"):
        lowdim.hyper.load_hypernet(hyper_file)


# -- BH3: a version of Unicode digits is a version no lowdim writes -----------------------------------------
@pytest.mark.parametrize("version", ["²", "١", "𝟗"])
def test_a_format_version_of_unicode_digits_is_one_that_no_lowdim_writes(version):
    assert format_version_problem({"format_version": version}, "adapter", "1") == (
        f"adapter format version {version!r}, which no lowdim writes (the file was edited or made by another "
        f"tool); this lowdim reads version 1")


def test_a_read_of_an_adapter_with_a_unicode_digit_version_is_one_line(tmp_path):
    path = rewrite(saved(tmp_path), format_version="²")
    with pytest.raises(AdapterFileError, match="format version '²', which no lowdim writes"):
        lowdim.read_adapter(path)


# -- BH4: a layer listed twice ------------------------------------------------------------------------------
def test_a_layer_listed_twice_is_refused_naming_it(tmp_path):
    path = saved(tmp_path)
    first = layers_of(path)[0]
    rewrite(path, layers=pack_layers([first, first]))
    with pytest.raises(AdapterFileError, match=f"{path}: layer 0 is listed twice in the metadata"):
        lowdim.read_adapter(path)
    with pytest.raises(AdapterFileError, match="layer 0 is listed twice"):
        lowdim.load_adapter(path, toy())


def test_a_bases_mismatch_names_an_edited_file_as_a_cause_not_only_the_platform(tmp_path):
    path = saved(tmp_path, "lidb", a=2, b=2)
    first, second = layers_of(path)
    rewrite(path, layers=pack_layers([LayerSpec(second.name, 8, 8), LayerSpec(first.name, 8, 8)]))
    with pytest.raises(AdapterFileError, match="checksum mismatch") as error:
        lowdim.read_adapter(path).lora_factors()
    assert "layer list" in str(error.value) and "edited" in str(error.value)


# -- BH6: a hypernetwork header's bases are sized before they are made ---------------------------------------
def test_a_hypernet_header_claiming_wide_bases_is_refused_before_they_are_made(hyper_file):
    wide = 4096
    config = {**json.loads(safe_open(str(hyper_file), "pt").metadata()["space_config"]), "a": wide, "b": wide}
    rewrite(hyper_file, layers=json.dumps([["q", wide, wide]]), space_config=json.dumps(config))
    start = time.perf_counter()
    with pytest.raises(LowdimError, match="refusing the sizes in its metadata"):
        lowdim.hyper.load_hypernet(hyper_file)
    assert time.perf_counter() - start < 2  # QR of 4096-wide bases takes about 20 s


# -- BH7: a plain-JSON layer list is bounded before it is parsed ---------------------------------------------
def test_a_huge_plain_json_layer_list_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(json, "loads", lambda *a, **k: pytest.fail("parsed"))
    text = "[" + ",".join(['["x",8,8]'] * (MAX_INFLATED // 9 + 1)) + "]"
    with pytest.raises(AdapterFileError, match=r"layer list in the metadata is longer than 16 MB"):
        unpack_layers(text, tmp_path / "f.safetensors")


# -- BH8: layer names hold nothing unsafe to print, and nothing no module path has (BK1: torch's others pass) ----
@pytest.mark.parametrize("name", ["0\x00evil", "a\nb", "\x1b[2J", "a\x7fb", "c1\x9b31m", "a\u2028b", "unet..x",
                                  ".x", "x.", "", "x" * 513])
def test_a_layer_name_no_module_path_has_or_unsafe_to_print_is_refused(tmp_path, name):
    with pytest.raises(AdapterFileError, match=r"layer name .* (control character|empty part|is empty)") as error:
        checked_layers([[name, 8, 8]], tmp_path / "f.safetensors")
    assert str(error.value).isprintable()  # printed escaped, never raw


@pytest.mark.parametrize("name", ["unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                                  "text_encoder.text_model.encoder.layers.11.self_attn.out_proj",
                                  "unet.mid_block.attentions.0.proj_in", "blocks-1.conv", "ß.ü",
                                  "blocks.to q", "attn:v", "conv+bn/1", " unet.x", "q.lora_A.my adapter"])
def test_module_paths_pass(tmp_path, name):
    assert checked_layers([[name, 8, 8]], tmp_path / "f.safetensors")[0].name == name


# -- BH10: stray tensors and bad base64 -------------------------------------------------------------------------
def test_a_stray_buffer_tensor_is_named_as_unexpected(tmp_path):
    path = rewrite(saved(tmp_path, "lidb", a=2, b=2), {"buffer.evil": torch.ones(10)})
    with pytest.raises(AdapterFileError,
                       match=r"unexpected tensor 'buffer.evil': it is not a frozen basis of space 'lidb'"):
        lowdim.read_adapter(path)


def test_a_stray_param_tensor_is_named_as_none_of_the_space(tmp_path):
    path = rewrite(saved(tmp_path, "lidb", a=2, b=2), {"evil": torch.ones(10)})
    with pytest.raises(AdapterFileError, match=r"unexpected tensor 'evil': it is not a param of space 'lidb'"):
        lowdim.read_adapter(path)


def test_a_layer_list_of_bad_base64_says_so(tmp_path):
    with pytest.raises(AdapterFileError, match="the layer list in the metadata is not valid base64"):
        unpack_layers("zlib:!!!!", tmp_path / "f.safetensors")


@pytest.fixture
def hyper_file(tmp_path) -> Path:
    from lowdim.hyper import HyperConfig, HyperNetwork, save_hypernet

    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    encoder = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64)
    config = HyperConfig(encoder_config=transformers.ViTConfig(**encoder), width=32, attention_heads=4,
                         feedforward=64, iterations=2)
    net = HyperNetwork(config, lowdim.get_space("lidb", a=6, b=5), [LayerSpec("q", 16, 8), LayerSpec("o", 12, 12)])
    return save_hypernet(tmp_path / "hyper.safetensors", net, {"model": "tiny-sd", "layer_set": "qo"}, adapter_seed=0)


# -- BH1/BH2 for describer files -------------------------------------------------------------------------------
@pytest.mark.parametrize("groups", [DEEP_LIST, "[1]", '{"hair": 5}'], ids=["deep", "list", "number"])
def test_a_describer_whose_groups_are_damaged_is_one_line(tmp_path, groups):
    from lowdim.hyper.describer import Describer, load_describer, save_describer

    path = save_describer(tmp_path / "d.safetensors", Describer({"hair": ["dark", "fair"]}, 2, 3),
                          {"encoder": "e", "input_size": 32, "normalize": "x", "pool": 0})
    rewrite(path, groups=groups)
    with pytest.raises(LowdimError, match=f"{path}: its groups, tokens or width are missing or unreadable"):
        load_describer(path)


def test_a_layer_name_that_would_be_refused_when_read_back_is_refused_when_injected(tmp_path):
    model = nn.ModuleDict({"a\nb": nn.Linear(4, 4)})  # torch takes a line break in a ModuleDict key
    with pytest.raises(LowdimError, match=r"adapter 'default' layer 'a\\nb': its name holds a control character"):
        lowdim.inject(model, lowdim.get_space("lora", rank=1), ["*"], seed=0)
    assert not lowdim.Adapters(model).names()


def test_a_0d_tensor_where_a_flat_one_is_expected_is_named(tmp_path):
    path = saved(tmp_path)
    rewrite(path, {"A_train": torch.tensor(1.0)})  # a scalar: no layer's chunk can be cut from it
    with pytest.raises(AdapterFileError, match=r"toy.safetensors: tensor 'A_train' is 0-D \(\), where"):
        lowdim.read_adapter(path)
