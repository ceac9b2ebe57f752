"""An adapter file whose ``layers`` metadata lists fewer layers than its tensors hold values for (a file damaged or
edited by another tool) is refused in one line naming the file and the tensors, never read as a partial adapter
that would draw other pictures without a word (review Q, Q2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors_edit import rewrite
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError
from lowdim.layer_lists import pack_layers, unpack_layers
from lowdim_cli.main import main

LAYERS = ["unet.0", "unet.2", "unet.4"]
SPACES = {"lora": {"rank": 2}, "lidb": {}}


def saved(tmp_path: Path, space: str, store_bases: bool = False) -> Path:
    """An adapter on three layers (named as in an SD model, so export takes them), with random values."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"unet": nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(),
                                                 nn.Linear(8, 8))})
    adapters = lowdim.inject(model, lowdim.get_space(space, **SPACES[space]), LAYERS, seed=3)
    with torch.no_grad():
        for param in adapters.parameters("default"):
            param.copy_(torch.randn_like(param))
    return lowdim.save_adapter(tmp_path / "me.safetensors", model, store_bases=store_bases)


def with_layers_dropped(path: Path, keep: slice) -> Path:
    """``path`` rewritten with its ``layers`` metadata cut to ``keep``; the tensors stay as they were."""
    with safe_open(str(path), framework="pt") as handle:
        layers = unpack_layers(handle.metadata()["layers"], path)
    return rewrite(path, layers=pack_layers(layers[keep]))


def tensor_names(path: Path) -> list[str]:
    with safe_open(str(path), framework="pt") as handle:
        return [key for key in handle.keys() if not key.startswith("__")]  # noqa: SIM118


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("keep", [slice(0, 2), slice(1, 3), slice(0, 1)], ids=["last-gone", "first-gone", "one-left"])
def test_tensors_holding_more_values_than_the_listed_layers_need_are_refused(tmp_path, space, keep):
    path = saved(tmp_path, space)
    assert len(lowdim.read_adapter(path).layers) == len(LAYERS)  # the file as saved reads
    with_layers_dropped(path, keep)
    with pytest.raises(AdapterFileError, match="hold more values than the layers need") as refused:
        lowdim.read_adapter(path)
    said = str(refused.value)
    assert said.startswith(f"{path}: tensor(s) ") and "\n" not in said
    assert all(name in said for name in tensor_names(path)), said


def test_stored_bases_longer_than_the_layer_list_are_refused_too(tmp_path):
    path = saved(tmp_path, "lidb", store_bases=True)
    with_layers_dropped(path, slice(0, 2))
    with pytest.raises(AdapterFileError, match="hold more values than the layers need") as refused:
        lowdim.read_adapter(path)
    assert str(refused.value).startswith(f"{path}: tensor(s) ")


def test_export_of_such_a_file_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
    path = with_layers_dropped(saved(tmp_path, "lora"), slice(0, 2))
    out = tmp_path / "out" / "me.kohya.safetensors"
    assert main(["export", str(path), "--format", "kohya", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and "hold more values than the layers need" in lines[0], err
    assert not out.exists()
