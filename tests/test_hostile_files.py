"""Hostile and broken files are bounded: every size a file states is checked before anything is built
from it, tensors must be finite floats, and each refusal names the real problem in one line.

The files are small and hand-made (a valid file with its metadata or a tensor rewritten), so no test
here allocates more than a few MB: a refusal that came after the allocation would show as a
MemoryError or a very slow test rather than pass.
"""

from __future__ import annotations

import base64
import contextlib
import json
import pickle
import re
import zlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim import filecheck, foreign_files
from lowdim.errors import AdapterFileError, LowdimError
from lowdim.spaces.base import LayerSpec
from lowdim_sd.export import export_adapter


def toy_model() -> nn.Module:
    """Layer names as in an SD model (``unet.``), so the LoRA export takes them."""
    torch.manual_seed(0)
    return nn.ModuleDict({"unet": nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8))})


def saved(tmp_path: Path, space: str = "lidb", store: bool = False, **options) -> Path:
    model = toy_model()
    adapters = lowdim.inject(model, lowdim.get_space(space, **options), ["unet.0", "unet.2"], seed=11)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    return lowdim.save_adapter(tmp_path / "me.safetensors", model, store_bases=store)


def packed(layers) -> str:
    return "zlib:" + base64.b64encode(zlib.compress(json.dumps(layers).encode())).decode()


# -- 11: sizes are bounded before anything is allocated ---------------------------------------
@pytest.mark.parametrize("sizes", [(10**9, 16), (24, 0), (24, -3), (24, 2.5), (24, True)])
def test_layer_sizes_out_of_bounds_are_refused_naming_the_layer(tmp_path, sizes):
    path = rewrite(saved(tmp_path), layers=packed([["unet.0", *sizes], ["unet.2", 8, 24]]))
    with pytest.raises(AdapterFileError, match=r"layer unet\.0 has size .* in \[1, 65536\]"):
        lowdim.read_adapter(path)


def test_a_12_kb_file_claiming_huge_layers_cannot_make_export_regenerate_gigabytes(tmp_path):
    # LiDB's trained params do not depend on the layer sizes, so the tiny tensors fit any claimed size;
    # 400 layers of 65536 x 65536 would regenerate 290 M basis values for a 9 KB file.
    path = saved(tmp_path, a=6, b=5)
    layers = [[f"unet.{i}", filecheck.MAX_FEATURES, filecheck.MAX_FEATURES] for i in range(400)]
    with safe_open(str(path), framework="pt") as handle:
        per_layer = {key: handle.get_tensor(key)[: handle.get_tensor(key).numel() // 2] for key in handle.keys()}  # noqa: SIM118
    rewrite(path, {key: value.repeat(400).half() for key, value in per_layer.items()}, layers=packed(layers),
            basis_checksum="")
    assert path.stat().st_size < 12_000
    adapter = lowdim.read_adapter(path)  # reading is cheap: nothing is regenerated yet
    with pytest.raises(AdapterFileError, match="more than the 536870912 lowdim makes for one file"):
        adapter.lora_factors()
    with pytest.raises(AdapterFileError, match="more than the 536870912 lowdim makes for one file"):
        export_adapter(path, tmp_path / "out.safetensors")


def test_one_huge_layer_with_wide_bases_is_refused_before_it_is_made(tmp_path):
    space = lowdim.get_space("lidb", a=300, b=300)
    layers = [LayerSpec("unet.0", filecheck.MAX_FEATURES, filecheck.MAX_FEATURES), LayerSpec("unet.2", 8, 24)]
    sizes = {key: sum(int(torch.Size(space.param_shapes(layer)[key]).numel()) for layer in layers)
             for key in ("A_train", "B_train")}
    path = rewrite(saved(tmp_path), {key: torch.ones(size) for key, size in sizes.items()},
                   space_config=json.dumps(space.config.to_dict()),
                   layers=packed([[layer.name, layer.out_features, layer.in_features] for layer in layers]))
    assert lowdim.read_adapter(path).layers == layers
    with pytest.raises(AdapterFileError, match=r"layer unet\.0 \(65536x65536\) would need about 78643200 "
                                               r"regenerated basis values, more than the 33554432"):
        export_adapter(path, tmp_path / "out.safetensors")


def test_stored_bases_are_sized_against_the_model_before_they_are_made(tmp_path, monkeypatch):
    model = toy_model()
    lowdim.inject(model, lowdim.get_space("lidb", a=6, b=5), ["unet.0", "unet.2"], seed=11)
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model, store_bases=True)
    rewrite(path, layers=packed([["unet.0", 60000, 60000], ["unet.2", 8, 24]]))

    def never(*args):
        raise AssertionError("bases were shaped before the layers were checked against the model")

    monkeypatch.setattr("lowdim.file_loading.buffer_shapes", never)
    with pytest.raises(AdapterFileError, match=r"does not fit this model: unet\.0 \(file 60000x60000, model 24x16\)"):
        lowdim.load_adapter(path, toy_model())


def test_compressed_metadata_is_inflated_with_a_cap(tmp_path):
    bomb = "zlib:" + base64.b64encode(zlib.compress(b"[" + b" " * (filecheck.MAX_INFLATED + 1) + b"]", 9)).decode()
    path = rewrite(saved(tmp_path), layers=bomb)
    assert path.stat().st_size < 40_000
    with pytest.raises(AdapterFileError, match="layer list in the metadata inflates past 16 MB"):
        lowdim.read_adapter(path)


def test_too_many_layers_are_refused(tmp_path):
    path = rewrite(saved(tmp_path), layers=packed([[f"l{i}", 1, 1] for i in range(filecheck.MAX_LAYERS + 1)]))
    with pytest.raises(AdapterFileError, match="lists 65537 layers, more than the 65536"):
        lowdim.read_adapter(path)


# -- 12: NaN/Inf and non-float tensors are refused by name ------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_params_are_refused_naming_layer_and_param_by_every_reader(tmp_path, bad):
    path = saved(tmp_path, a=6, b=5)
    with safe_open(str(path), framework="pt") as handle:
        b_train = handle.get_tensor("B_train").clone()
    b_train[-1] = bad  # the last value belongs to the second layer
    rewrite(path, {"B_train": b_train})
    message = r"layer unet\.2 param 'B_train' holds NaN or Inf"
    with pytest.raises(AdapterFileError, match=message):
        lowdim.read_adapter(path)
    with pytest.raises(AdapterFileError, match=message):  # generate, merge and train --init load this way
        lowdim.load_adapter(path, toy_model())
    with pytest.raises(AdapterFileError, match=message):
        export_adapter(path, tmp_path / "out.safetensors")


def test_non_finite_stored_bases_are_refused(tmp_path):
    path = saved(tmp_path, store=True)
    with safe_open(str(path), framework="pt") as handle:
        basis = handle.get_tensor("buffer.A_aux").clone()
    basis[0] = float("nan")
    rewrite(path, {"buffer.A_aux": basis})
    with pytest.raises(AdapterFileError, match=r"layer unet\.0 stored basis 'A_aux' holds NaN or Inf"):
        lowdim.read_adapter(path)


def test_a_tensor_one_value_too_short_is_refused_naming_the_file_and_the_layer(tmp_path):
    path = saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        a_train = handle.get_tensor("A_train")
    rewrite(path, {"A_train": a_train[:-1].clone()})
    expected = r"me\.safetensors: tensor 'A_train' is too short for layer unet\.2$"
    for read in (lowdim.read_adapter, lambda file: lowdim.load_adapter(file, toy_model())):
        with pytest.raises(AdapterFileError, match=expected):
            read(path)


def test_a_tensor_left_out_of_the_file_is_refused_naming_the_file_and_the_tensor(tmp_path):
    path = saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        metadata, kept = handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys() if key != "B_train"}  # noqa: SIM118
    save_file(kept, str(path), metadata=metadata)
    for read in (lowdim.read_adapter, lambda file: lowdim.load_adapter(file, toy_model())):
        with pytest.raises(AdapterFileError, match=r"me\.safetensors: tensor 'B_train' is missing$"):
            read(path)


def test_integer_tensors_are_refused_by_name(tmp_path):
    path = saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        a_train = handle.get_tensor("A_train")
    rewrite(path, {"A_train": a_train.to(torch.int32)})
    with pytest.raises(AdapterFileError, match="tensor 'A_train' holds int32, not floats"):
        lowdim.load_adapter(path, toy_model())


# -- 13: export checks the bases as loading does ----------------------------------------------
@pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")  # tested in test_inspect_export
def test_export_refuses_a_basis_checksum_mismatch_as_loading_does(tmp_path):
    path = rewrite(saved(tmp_path), basis_checksum="0123456789abcdef")
    with pytest.raises(AdapterFileError, match="checksum mismatch"):
        lowdim.load_adapter(path, toy_model())
    with pytest.raises(AdapterFileError, match="checksum mismatch"):
        export_adapter(path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    stored = saved(tmp_path / "stored", store=True)  # stored bases are the escape hatch for both
    rewrite(stored, basis_checksum="0123456789abcdef")
    assert export_adapter(stored, tmp_path / "out.safetensors").is_file()


# -- 16: messages name the real problem -------------------------------------------------------
def test_a_pickle_renamed_safetensors_is_named_as_such(tmp_path):
    zipped = tmp_path / "zipped.safetensors"
    torch.save({"A_train": torch.zeros(3)}, zipped)
    with pytest.raises(AdapterFileError, match="zipped.safetensors: this is a zip archive .*pickle"):
        lowdim.read_adapter(zipped)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"A_train": [0.0]}, protocol=4))
    with pytest.raises(LowdimError, match="raw.safetensors: this is a pickle"):
        lowdim.hyper.load_hypernet(raw)


def test_a_2d_tensor_where_a_flat_one_is_expected_is_named(tmp_path):
    path = saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        a_train = handle.get_tensor("A_train")
    rewrite(path, {"A_train": a_train.reshape(1, -1)})
    with pytest.raises(AdapterFileError, match=r"'A_train' is 2-D \(1, \d+\), where a lowdim adapter stores 1-D"):
        lowdim.read_adapter(path)


@pytest.mark.parametrize(("keys", "style"), [
    (["unet.down_blocks.0.attn1.to_q.lora_A.weight", "unet.down_blocks.0.attn1.to_q.lora_B.weight"], "diffusers/peft"),
    (["unet.down_blocks.0.attn1.to_q.lora.down.weight"], "diffusers/peft"),
    (["lora_unet_down_blocks_0_attn1_to_q.lora_down.weight", "lora_unet_down_blocks_0_attn1_to_q.alpha"], "kohya"),
])
def test_a_foreign_lora_fed_back_as_an_adapter_says_what_it_is_and_where_to_use_it(tmp_path, keys, style):
    path = tmp_path / "lora.safetensors"
    save_file({key: torch.zeros(2, 2) for key in keys}, str(path), metadata={"format": "pt"})
    with pytest.raises(AdapterFileError, match=f"this is a {style} LoRA, not a lowdim adapter: use it in diffusers"):
        lowdim.read_adapter(path)


def test_a_peft_lora_of_another_model_is_pointed_to_peft_not_to_diffusers(tmp_path):
    path = tmp_path / "adapter_model.safetensors"
    keys = ["base_model.model.encoder.layer.0.attention.self.query.lora_A.weight",
            "base_model.model.encoder.layer.0.attention.self.query.lora_B.weight"]
    save_file({key: torch.zeros(2, 2) for key in keys}, str(path), metadata={"format": "pt"})
    with pytest.raises(AdapterFileError, match=r"this is a diffusers/peft LoRA, not a lowdim adapter: use it with "
                                               r"peft \(PeftModel.from_pretrained\); lowdim reads only"):
        lowdim.read_adapter(path)


@pytest.mark.filterwarnings("ignore:.*ComfyUI reads only the kohya format")  # tested in test_inspect_export
@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_lowdims_own_exports_fed_back_are_named(tmp_path, fmt):
    out = export_adapter(saved(tmp_path), tmp_path / f"{fmt}.safetensors", fmt)
    style = "diffusers/peft" if fmt == "diffusers" else "kohya"
    with pytest.raises(AdapterFileError, match=f"this is a {style} LoRA"):
        lowdim.load_adapter(out, toy_model())


@pytest.mark.parametrize(("key", "expected"), [
    ("encoder.x", "not a lowdim adapter \\(metadata 'format' is 'pt'\\)"),
    ("model.diffusion_model.x", "a whole model checkpoint, not a lowdim adapter: pass it with --model \\(-m\\)"),
])
def test_a_file_of_another_format_is_refused_without_loading_its_tensors(tmp_path, monkeypatch, key, expected):
    path = tmp_path / "checkpoint.safetensors"
    save_file({key: torch.zeros(4)}, str(path), metadata={"format": "pt"})
    loaded = []

    class Counting:
        def __init__(self, handle):
            self.metadata, self.keys, self.handle = handle.metadata, handle.keys, handle

        def get_tensor(self, key):
            loaded.append(key)
            return self.handle.get_tensor(key)

    @contextlib.contextmanager
    def watched(*args, **kwargs):
        with safe_open(*args, **kwargs) as handle:
            yield Counting(handle)

    monkeypatch.setattr("lowdim.file_loading.safe_open", watched)
    with pytest.raises(AdapterFileError, match=expected):
        lowdim.read_adapter(path)
    assert loaded == []



def test_a_safetensors_whose_header_length_looks_like_a_pickle_opcode_still_reads(tmp_path):
    # The header length's low byte can be 0x80 followed by 2..5: a pickle's opening bytes.
    for pad in range(2000):
        path = tmp_path / "x.safetensors"
        save_file({"t": torch.zeros(1)}, str(path), metadata={"pad": "x" * pad})
        head = path.read_bytes()[:2]
        if head[0] == 0x80 and 2 <= head[1] <= 5:
            assert foreign_files.describe_foreign(path) is None
            return
    pytest.fail("no padding gave a header length that opens like a pickle")


def test_a_compressed_layer_list_cut_short_is_refused_naming_the_file(tmp_path):
    """Half a compressed layer list inflates to half the list without a zlib error: refused, never read as fewer
    layers."""
    whole = base64.b64decode(packed([[f"unet.{number}", 24, 16] for number in range(200)])[len("zlib:"):])
    path = rewrite(saved(tmp_path), layers="zlib:" + base64.b64encode(whole[:len(whole) // 2]).decode())
    said = rf"^{re.escape(str(path))}: the layer list in the metadata .* is cut short"
    with pytest.raises(AdapterFileError, match=said):
        lowdim.read_adapter(path)
