"""The checksum of an adapter's frozen bases that its file records (``basis_checksum``) keeps the bases check on.

Every lowdim since the first one writes the key in every adapter file: 16 hex digits for a space with frozen bases
made from the seed (LiDB, VeRA, Textual Inversion's selector), and "" for a space without any (LoRA). So a file whose
space makes bases but whose record is empty or gone was edited (typically together with its seed or layer list),
and loading or exporting it must not skip the check and silently compute another ΔW; a record that is no checksum
at all is damage, and is named as such rather than blamed on the platform.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"unet": nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8))})


def saved(tmp_path: Path, space: str = "lidb", **save) -> Path:
    model = toy_model()
    lowdim.inject(model, lowdim.get_space(space), ["unet.0", "unet.2"], seed=11)
    with torch.no_grad():
        for param in lowdim.Adapters(model).parameters("default"):
            param.copy_(torch.randn_like(param))
    return lowdim.save_adapter(tmp_path / f"{space}.safetensors", model, **save)


def edited(path: Path, **metadata: str | None) -> Path:
    """The file at ``path`` with metadata values replaced (None: the key removed), as a hand edit leaves it."""
    with safe_open(str(path), framework="pt") as handle:
        meta = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
    for key, value in metadata.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    save_file(tensors, str(path), metadata=meta)
    return path


NO_RECORD = {"emptied": "", "removed": None}


@pytest.mark.parametrize("record", sorted(NO_RECORD))
def test_a_lidb_file_with_its_seed_edited_and_its_checksum_emptied_is_refused(tmp_path, record):
    path = edited(saved(tmp_path), seed="12", basis_checksum=NO_RECORD[record])
    with pytest.raises(AdapterFileError, match=r"lidb\.safetensors: it records no basis_checksum") as refused:
        lowdim.load_adapter(path, toy_model())
    assert "\n" not in str(refused.value)
    with pytest.raises(AdapterFileError, match="records no basis_checksum"):
        lowdim.read_adapter(path).lora_factors()  # what export and merge read


def test_the_opt_out_still_loads_it_unchecked(tmp_path):
    path = edited(saved(tmp_path), basis_checksum="")
    model = toy_model()
    lowdim.load_adapter(path, model, verify_bases=False)
    assert set(lowdim.Adapters(model).slots("default")) == {"unet.0", "unet.2"}


@pytest.mark.parametrize("record", sorted(NO_RECORD))
def test_a_file_without_frozen_bases_needs_no_checksum(tmp_path, record):
    path = saved(tmp_path, "lora")
    assert lowdim.read_adapter(path).metadata["basis_checksum"] == ""  # what lowdim writes for LoRA
    edited(path, basis_checksum=NO_RECORD[record])
    lowdim.load_adapter(path, toy_model())
    assert set(lowdim.read_adapter(path).lora_factors()) == {"unet.0", "unet.2"}


def test_a_file_that_stores_its_bases_loads_them_without_a_checksum(tmp_path):
    path = edited(saved(tmp_path, store_bases=True), basis_checksum="")
    lowdim.load_adapter(path, toy_model())


@pytest.mark.parametrize("value", ["zz", "0123", "0123456789ABCDEF", "0123456789abcdef0", " 0123456789abcdef"])
def test_a_checksum_that_is_no_checksum_is_named_as_damage(tmp_path, value):
    path = edited(saved(tmp_path), basis_checksum=value)
    with pytest.raises(AdapterFileError, match=r"lidb\.safetensors: the basis_checksum in the metadata is not 16 "
                                                r"lowercase hex digits") as refused:
        lowdim.read_adapter(path)
    assert "mismatch" not in str(refused.value) and ascii(value) in str(refused.value)


def test_a_file_saved_through_a_wrapper_with_its_checksum_emptied_is_refused(tmp_path):
    from test_parallel_old_files import old_layout_file, plain

    path = edited(old_layout_file(tmp_path, "lidb")[0], seed="4", basis_checksum="")
    with pytest.raises(AdapterFileError, match="records no basis_checksum"):
        lowdim.load_adapter(path, nn.DataParallel(plain()))
    with pytest.raises(AdapterFileError, match="records no basis_checksum"):
        lowdim.load_adapter(lowdim.read_adapter(path), plain())
    lowdim.load_adapter(path, plain(), verify_bases=False)  # the opt-out holds here too


def test_a_hypernetwork_with_an_emptied_checksum_is_refused_too(tmp_path):
    """Its record may be null (a space without bases, or a caller's own record), never an empty string."""
    from test_hypernet_bases_record import hypernet_for

    from lowdim.hyper import load_hypernet, save_hypernet

    net, _ = hypernet_for("lidb", seed=7, a=8, b=8)
    path = save_hypernet(tmp_path / "h.safetensors", net, {"adapter_seed": 7, "bases_checksum": ""})
    with pytest.raises(lowdim.LowdimError, match=r"h\.safetensors: .*checksum"):
        load_hypernet(path)
