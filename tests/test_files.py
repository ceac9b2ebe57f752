"""Adapter files: compact, atomic, pickle-free, and validated against the target on load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

import lowdim
from lowdim import files
from lowdim.errors import AdapterFileError, LowdimError


def make_model(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(width, 24), nn.ReLU(), nn.Linear(24, 8))


def trained(space: str = "lidb", **options) -> tuple[nn.Module, lowdim.Adapters]:
    model = make_model()
    adapters = lowdim.inject(model, lowdim.get_space(space, **options), ["0", "2"], seed=11)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    return model, adapters


def test_file_holds_one_tensor_per_param_kind_and_the_metadata(tmp_path):
    model, _ = trained(a=6, b=5)
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model, base_model="toy", token="[V]")
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["A_train", "B_train"]
        meta = handle.metadata()
    assert meta["space"] == "lidb" and json.loads(meta["space_config"])["a"] == 6
    assert meta["seed"] == "11" and meta["base_model"] == "toy" and meta["token"] == "[V]"
    assert len(meta["basis_checksum"]) == 16
    adapter = lowdim.read_adapter(path)
    assert [(layer.name, layer.out_features, layer.in_features) for layer in adapter.layers] == [
        ("0", 24, 16), ("2", 8, 24)]
    assert adapter.num_params == 6 + 5 + 6 + 5


def test_lora_export_from_file_equals_the_live_update(tmp_path):
    model, adapters = trained(a=6, b=5)
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model)
    exported = lowdim.read_adapter(path).lora_factors()
    for layer, (down, up) in exported.items():
        assert torch.allclose(up @ down, adapters.delta("default", layer).detach(), atol=1e-6)


def test_lora_export_of_a_file_saved_with_a_per_layer_scale_carries_that_scale(tmp_path):
    # Every kohya/diffusers export and every `lowdim merge` reads lora_factors(): a scale left out ships the LoRA at
    # the wrong strength with no error.
    model, adapters = trained(a=6, b=5)
    adapters.set_scale("default", 0.5, layers="2")
    exported = lowdim.read_adapter(lowdim.save_adapter(tmp_path / "me.safetensors", model)).lora_factors()
    for layer in ("0", "2"):
        down, up = exported[layer]
        assert torch.allclose(up @ down, adapters.delta("default", layer).detach(), atol=1e-6)


def test_saving_onto_a_folder_is_refused_naming_it_not_a_temp_path(tmp_path):
    model, _ = trained()
    folder = tmp_path / "adapter.safetensors"
    folder.mkdir()
    with pytest.raises(LowdimError, match=r"adapter\.safetensors: is a folder; give a file name to write$"):
        lowdim.save_adapter(folder, model)
    assert folder.is_dir() and not any(folder.iterdir())


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path, monkeypatch):
    model, _ = trained()
    path = tmp_path / "me.safetensors"
    lowdim.save_adapter(path, model)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of a write

    monkeypatch.setattr(files, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        lowdim.save_adapter(path, model, dtype="fp16")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["me.safetensors"]


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".ckpt", ".pth"])
def test_pickle_formats_are_refused_for_reading_and_writing(tmp_path, suffix):
    model, _ = trained()
    path = tmp_path / f"adapter{suffix}"
    path.write_bytes(b"\x80\x04not really")
    with pytest.raises(AdapterFileError, match="pickled"):
        lowdim.read_adapter(path)
    with pytest.raises(AdapterFileError, match="pickled"):
        lowdim.save_adapter(path, model)


def test_truncated_and_garbage_files_get_a_clear_error(tmp_path):
    model, _ = trained()
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:-10])
    garbage = tmp_path / "noise.safetensors"
    garbage.write_bytes(b"hello world, not a tensor file")
    cut_short = r"cut\.safetensors: this is a \.safetensors file cut short \(its tensors need \d+ bytes, the file "
    with pytest.raises(AdapterFileError, match=cut_short + r"holds \d+\); copy or download it again"):
        lowdim.read_adapter(truncated)
    with pytest.raises(AdapterFileError, match="this is a text file, not safetensors"):
        lowdim.read_adapter(garbage)
    with pytest.raises(AdapterFileError, match="no such adapter file"):
        lowdim.read_adapter(tmp_path / "missing.safetensors")


def test_a_file_for_another_model_lists_every_mismatch(tmp_path):
    model, _ = trained()
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model, base_model="toy-16")
    other = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 8))
    with pytest.raises(AdapterFileError) as error:
        lowdim.load_adapter(path, other)
    assert "toy-16" in str(error.value) and "0 (file 24x16, model 24x32)" in str(error.value)
    renamed = nn.Sequential(nn.Linear(16, 24))
    with pytest.raises(AdapterFileError, match="2 \\(missing in model\\)"):
        lowdim.load_adapter(path, renamed)


def test_a_file_already_read_loads_as_its_path_does_and_is_checked_against_the_model_the_same(tmp_path):
    model, _ = trained(a=6, b=5)
    x = torch.randn(3, 16)
    read = lowdim.read_adapter(lowdim.save_adapter(tmp_path / "me.safetensors", model, base_model="toy-16"))
    fresh = make_model()
    lowdim.load_adapter(read, fresh)
    assert torch.allclose(fresh(x), model(x), atol=1e-6)
    other = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 8))
    with pytest.raises(AdapterFileError, match=r"toy-16 and does not fit this model: 0 \(file 24x16, model 24x32\)"):
        lowdim.load_adapter(read, other)


def test_changed_bases_are_detected_and_stored_bases_are_an_escape_hatch(tmp_path, monkeypatch):
    model, _ = trained(a=6, b=5)
    x = torch.randn(3, 16)
    expected = model(x)
    regenerated = lowdim.save_adapter(tmp_path / "seed.safetensors", model)
    stored = lowdim.save_adapter(tmp_path / "stored.safetensors", model, store_bases=True)
    # Simulate a platform whose QR returns different bases for the same seed.
    from lowdim.spaces.lidb import LidbSpace

    original = LidbSpace.make_buffers
    monkeypatch.setattr(LidbSpace, "make_buffers", lambda self, layer, seed: original(self, layer, seed + 1))
    with pytest.raises(AdapterFileError, match="checksum mismatch"):
        lowdim.load_adapter(regenerated, make_model())
    fresh = make_model()
    lowdim.load_adapter(stored, fresh)
    assert torch.allclose(fresh(x), expected, atol=1e-6)


def test_per_sample_adapters_save_one_sample_at_a_time(tmp_path):
    model = make_model()
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["0"], batch=3)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    for sample in (None, -1, 3):  # -1 would save the last identity's adapter as if it were asked for
        with pytest.raises(AdapterFileError, match="holds 3 per-sample adapters: pass sample=0..2"):
            lowdim.save_adapter(tmp_path / "x.safetensors", model, sample=sample)
    assert not (tmp_path / "x.safetensors").exists()
    path = lowdim.save_adapter(tmp_path / "x.safetensors", model, sample=2)
    loaded = lowdim.read_adapter(path).params["0"]["up"]
    assert torch.equal(loaded, adapters.tensors("default")["0"]["up"][2].detach())


def test_sd15_lidb_file_in_fp16_is_at_most_60_kb():
    from lowdim.sizing import adapter_file_bytes

    backend = lowdim.get_registry().backend("sd15")
    size = adapter_file_bytes(backend.skeleton(), lowdim.get_space("lidb"), backend.resolve_layer_set(None), "fp16")
    assert 52_800 < size <= 60_000


@pytest.mark.parametrize("dtype, stored", [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_the_dtype_metadata_names_the_dtype_the_tensors_are_stored_in(tmp_path, dtype, stored):
    # Other tools read the 'dtype' record instead of the tensors: it must not claim fp32 for a half file.
    model, _ = trained(a=6, b=5)
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model, dtype=dtype)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["dtype"] == dtype
        names = handle.keys()  # a safe_open handle is not iterable
        assert names and {handle.get_tensor(key).dtype for key in names} == {stored}


def test_atomic_writes_get_the_permissions_a_plain_open_gives(tmp_path):
    import os
    import stat

    from lowdim.files import atomic_write

    previous = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "note.txt", lambda temp: Path(temp).write_text("hi"))
    finally:
        os.umask(previous)
    assert path.read_text() == "hi" and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["note.txt"]


def test_a_file_keeps_its_adapter_name_and_loads_under_it_unless_told(tmp_path):
    model = make_model()
    lowdim.inject(model, lowdim.get_space("lora"), ["0"], name="smile")
    path = lowdim.save_adapter(tmp_path / "smile.safetensors", model, "smile")
    assert lowdim.read_adapter(path).metadata["adapter_name"] == "smile"
    fresh = make_model()
    assert lowdim.load_adapter(path, fresh).name == "smile"
    assert lowdim.load_adapter(path, fresh, name="again").name == "again"
    assert lowdim.Adapters(fresh).names() == ["smile", "again"]
    hostile = tmp_path / "hostile.safetensors"
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    save_file(load_file(str(path)), str(hostile), metadata={**meta, "adapter_name": "not a name; rm -rf"})
    assert lowdim.load_adapter(hostile, make_model()).name == "default"  # a name that is no identifier is ignored
