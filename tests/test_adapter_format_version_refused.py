"""An adapter file of a format version this lowdim does not know (one a newer lowdim wrote, or one with the version
gone) is refused in one line naming the file and the version, never read with today's layout, where it could load
wrong (review Q, Q3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError
from lowdim.file_loading import FORMAT_VERSION
from lowdim_cli.main import main


def saved(tmp_path: Path) -> Path:
    """A LoRA adapter on a layer named as in an SD model (so export takes it), with random values."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(8, 8))})
    adapters = lowdim.inject(model, lowdim.get_space("lora", rank=2), ["unet.0"], seed=0)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    return lowdim.save_adapter(tmp_path / "me.safetensors", model)


def without_format_version(path: Path) -> Path:
    with safe_open(str(path), framework="pt") as handle:
        metadata = {key: value for key, value in handle.metadata().items() if key != "format_version"}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_the_saved_file_states_the_version_this_lowdim_reads(tmp_path):
    path = saved(tmp_path)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["format_version"] == FORMAT_VERSION
    assert lowdim.read_adapter(path).layers


@pytest.mark.parametrize("version", ["99", "2"])
def test_a_newer_format_version_is_refused_naming_the_file_and_the_version(tmp_path, version):
    path = rewrite(saved(tmp_path), format_version=version)
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(path)
    assert str(refused.value) == f"{path}: adapter format version {version}; this lowdim reads version 1: " \
                                 f"upgrade lowdim"


@pytest.mark.parametrize("version", ["0", "1.0", ""])
def test_a_format_version_no_lowdim_wrote_is_refused_naming_the_file_and_the_version(tmp_path, version):
    path = rewrite(saved(tmp_path), format_version=version)
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(path)
    assert str(refused.value) == (f"{path}: adapter format version {version!r}, which no lowdim writes (the file was "
                                  f"edited or made by another tool); this lowdim reads version 1")


def test_a_file_without_a_format_version_is_refused(tmp_path):
    path = without_format_version(saved(tmp_path))
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(path)
    assert str(refused.value) == (f"{path}: adapter has no format version, which every lowdim writes (the file was "
                                  f"edited or made by another tool); this lowdim reads version 1")


def test_loading_a_newer_file_into_a_model_refuses_it_and_leaves_the_model_bare(tmp_path):
    path = rewrite(saved(tmp_path), format_version="99")
    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(8, 8))})
    with pytest.raises(AdapterFileError, match="format version 99; this lowdim reads version 1: upgrade lowdim"):
        lowdim.load_adapter(path, model)
    assert not lowdim.Adapters(model).names()


def test_export_of_a_newer_file_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
    path = rewrite(saved(tmp_path), format_version="99")
    out = tmp_path / "out" / "me.kohya.safetensors"
    assert main(["export", str(path), "--format", "kohya", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and "format version 99; this lowdim reads version 1: upgrade lowdim" in lines[0], err
    assert not out.exists()
