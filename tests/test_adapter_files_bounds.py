"""Adapter files at the edges of what they hold: a seed past 16 bits, sizes no model bounds, a huge header length,
a layer entry with extra values, layers out of name order, what a re-save keeps, files with no metadata, a header
cut by a few bytes, a per-layer scale in a file whose layer names lose a wrapper's prefix.

Each test here was written for a mutant of review DF's audit (/work/runs/r55/review-DF.md) that the rest of the
suite let through, and fails on it: each guards a promise a user relies on that no other test reached.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError
from lowdim.foreign_files import safetensors_metadata


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8))


def trained(model: nn.Module, seed: int = 11) -> nn.Module:
    """``model`` with LiDB adapters (a=6, b=5) on both linear layers, their parameters set away from zero."""
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=6, b=5), ["0", "2"], seed=seed)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    return model


@pytest.mark.parametrize("seed", [70_001, 2**40 + 3])
def test_a_seed_past_16_bits_round_trips_and_the_file_loads(tmp_path: Path, seed: int) -> None:
    model = trained(small_model(), seed=seed)
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model)
    assert lowdim.read_adapter(path).seed == seed
    fresh = small_model()
    lowdim.load_adapter(path, fresh)  # the bases made from the seed read back match the recorded checksum
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_a_stored_bases_file_read_without_a_model_has_its_sizes_bounded_before_bases_are_built(
        tmp_path: Path) -> None:
    path = lowdim.save_adapter(tmp_path / "me.safetensors", trained(small_model()), store_bases=True)
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    # 400 layers of 65536x65536, with trained parameters that fit that list (6 and 5 values a layer), so nothing
    # before the size bound refuses it: only the bound keeps lowdim from shaping bases for every listed layer.
    tensors.update({"A_train": torch.zeros(400 * 6), "B_train": torch.zeros(400 * 5)})
    layers = [[f"l{i}", 65536, 65536] for i in range(400)]
    save_file(tensors, str(path), metadata={**metadata, "layers": json.dumps(layers), "embedding_layers": "[]"})
    with pytest.raises(AdapterFileError, match=r"regenerated basis values.*refusing the sizes in its metadata"):
        lowdim.read_adapter(path)


def test_a_tiny_file_claiming_a_huge_header_is_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes((1 << 62).to_bytes(8, "little") + b"{}")  # 10 bytes that claim a 2**62-byte header
    assert safetensors_metadata(path) is None


def lora_file(tmp_path: Path) -> Path:
    model = small_model()
    adapters = lowdim.inject(model, lowdim.get_space("lora"), ["0"], seed=11)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    return lowdim.save_adapter(tmp_path / "lora.safetensors", model)


def with_metadata(path: Path, **values: str) -> Path:
    """The file at ``path`` rewritten with some metadata values replaced, as a hand edit leaves it."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata={**metadata, **values})
    return path


@pytest.mark.parametrize("entry", [["0", 24, 16, 1], ["0", 24, 16, "x", "y"]])
def test_a_layer_list_entry_with_extra_values_is_one_line_naming_it(tmp_path: Path, entry: list) -> None:
    path = with_metadata(lora_file(tmp_path), layers=json.dumps([entry]))
    with pytest.raises(AdapterFileError, match=r"lora\.safetensors: a layer list entry is not \[name, out, in\]"):
        lowdim.read_adapter(path)


def twelve_layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(8, 8) for _ in range(12)])


def test_a_file_round_trips_when_the_models_layer_order_is_not_its_names_sorted_order(tmp_path: Path) -> None:
    # Layers "0".."11": sorted by name, "10" and "11" come before "2". Every layer has the same shape, so values
    # stored in another order than the layer list's would load without any error, into the wrong layers.
    model = twelve_layers()
    adapters = lowdim.inject(model, lowdim.get_space("lidb", a=3, b=3), [str(i) for i in range(12)], seed=11)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model)
    fresh = twelve_layers()
    lowdim.load_adapter(path, fresh)
    loaded = lowdim.Adapters(fresh)
    for i in range(12):
        assert torch.equal(loaded.delta("default", str(i)), adapters.delta("default", str(i))), f"layer {i}"


def test_a_loaded_adapter_keeps_the_layer_set_it_was_saved_with_and_a_resave_records_it(tmp_path: Path) -> None:
    path = lora_file(tmp_path)
    saved_set = lowdim.read_adapter(path).metadata["layer_set"]
    assert saved_set == "0"
    fresh = small_model()
    assert lowdim.load_adapter(path, fresh).layer_set == saved_set
    again = lowdim.save_adapter(tmp_path / "again.safetensors", fresh)
    assert lowdim.read_adapter(again).metadata["layer_set"] == saved_set


def test_a_resave_of_a_loaded_adapter_keeps_its_token_and_base_model(tmp_path: Path) -> None:
    model = small_model()
    lowdim.inject(model, lowdim.get_space("lora"), ["0"], seed=11)
    first = lowdim.save_adapter(tmp_path / "first.safetensors", model, token="[V]", base_model="toy-model")
    fresh = small_model()
    lowdim.load_adapter(first, fresh)
    metadata = lowdim.read_adapter(lowdim.save_adapter(tmp_path / "again.safetensors", fresh)).metadata
    assert (metadata["token"], metadata["base_model"]) == ("[V]", "toy-model")


@pytest.mark.parametrize(("tensors", "said"), [
    ({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4)}, "a whole model checkpoint, not a lowdim"),
    ({"lora_unet_down.lora_down.weight": torch.zeros(4), "lora_unet_down.lora_up.weight": torch.zeros(4)},
     "this is a kohya LoRA, not a lowdim"),
    ({"weight": torch.zeros(4)}, r"not a lowdim adapter \(metadata 'format' is None\)"),
])
def test_a_safetensors_file_with_no_metadata_is_named_for_what_it_is(tmp_path: Path, tensors: dict, said: str) -> None:
    # Most other tools' files carry no metadata at all: no 'format' means not lowdim's, so its tensors (a checkpoint's
    # gigabytes) are never loaded and the line says what the file is, not what a lowdim file would lack.
    path = tmp_path / "other.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(AdapterFileError, match=said):
        lowdim.read_adapter(path)


@pytest.mark.parametrize("missing", [1, 4, 8])
def test_a_file_cut_inside_its_header_by_up_to_8_bytes_says_its_header_alone_is_longer(
        tmp_path: Path, missing: int) -> None:
    # The 8 length bytes count: a header of 100 bytes needs a file of 108, so 100 to 107 bytes is a cut header.
    size = 108 - missing
    path = tmp_path / "cut.safetensors"
    path.write_bytes((100).to_bytes(8, "little") + b'{"a":' + b" " * (size - 13))
    assert path.stat().st_size == size
    with pytest.raises(AdapterFileError, match=fr"cut short \(its header alone is 108 bytes, the file holds {size}\)"):
        lowdim.read_adapter(path)



def test_another_tools_embedding_of_emb_params_alone_is_named_a_textual_inversion_embedding(tmp_path: Path) -> None:
    # A1111's safetensors embeddings hold one tensor, 'emb_params', and often no metadata that says what they are.
    path = tmp_path / "face.safetensors"
    save_file({"emb_params": torch.zeros(2, 768)}, str(path))
    with pytest.raises(AdapterFileError, match=r"this is a Textual Inversion embedding \(a1111 format\), not a lowdim"):
        lowdim.read_adapter(path)


class OldDataParallel(nn.Module):
    """Names its model's layers ``module.0``, ``module.2`` as nn.DataParallel did when an older lowdim saved through
    one, so today's lowdim writes what that one wrote."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def test_a_per_layer_scale_in_a_file_saved_through_a_wrapper_is_kept_when_its_names_lose_the_prefix(
        tmp_path: Path) -> None:
    # The load renames the file's layers from 'module.2' to '2'; a scale left under the old name would load the layer
    # at full strength, with no error.
    wrapped = OldDataParallel(small_model())
    adapters = lowdim.inject(wrapped, lowdim.get_space("lidb", a=6, b=5), ["module.0", "module.2"], seed=11)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    adapters.set_scale("default", 0.5, layers="module.2")
    path = lowdim.save_adapter(tmp_path / "old.safetensors", wrapped)
    assert lowdim.read_adapter(path).scales["module.2"] == 0.5
    fresh = small_model()
    lowdim.load_adapter(path, fresh)
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(fresh(x), wrapped(x))
