"""``lowdim show`` on an adapter file every load refuses says so, in the load's own words, and prints what the file
records in a bounded form: a user deciding what a file is must not read "use it: ..." for a file that will not load,
nor scroll past a wall of brackets."""

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
from lowdim_cli.main import main
from lowdim_sd.file_info import describe

REFUSED = "every command that loads this file refuses it"


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"unet": nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 8))})


def saved(tmp_path: Path, space: str = "lidb", **save) -> Path:
    model = toy_model()
    lowdim.inject(model, lowdim.get_space(space), ["unet.0", "unet.2"], seed=11)
    return lowdim.save_adapter(tmp_path / f"{space}.safetensors", model, **save)


def edited(path: Path, tensors: dict | None = None, **metadata: str) -> Path:
    with safe_open(str(path), framework="pt") as handle:
        meta = {**handle.metadata(), **metadata}
        old = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
    save_file({**old, **(tensors or {})}, str(path), metadata=meta)
    return path


def load_words(path: Path) -> str:
    with pytest.raises(AdapterFileError) as refused:
        lowdim.load_adapter(path, toy_model())
    return str(refused.value).removeprefix(f"{path}: ")


@pytest.mark.parametrize(("space", "store"), [("lidb", False), ("lidb", True), ("lora", False)],
                         ids=["lidb", "lidb-stored", "lora"])
def test_a_stray_buffer_tensor_is_named_as_the_load_names_it(tmp_path, space, store):
    path = edited(saved(tmp_path, space, store_bases=store), {"buffer.evil": torch.zeros(4)})
    words = load_words(path)
    assert words == f"unexpected tensor 'buffer.evil': it is not a frozen basis of space '{space}'"
    info = describe(path)
    assert dict(info.rows)["problem"] == f"{words}: {REFUSED}"
    assert info.use == ""


def test_stored_bases_a_load_takes_are_no_problem(tmp_path):
    path = saved(tmp_path, store_bases=True)
    lowdim.load_adapter(path, toy_model())
    info = describe(path)
    assert "problem" not in dict(info.rows) and info.use.startswith("lowdim generate")


def nested(depth: int) -> str:
    return "[" * depth + "1.0" + "]" * depth


@pytest.mark.parametrize("depth", [90, 300, 5000])
def test_a_deeply_nested_scales_value_is_one_bounded_escaped_line(tmp_path, depth, capsys):
    path = edited(saved(tmp_path), scales=f"[{nested(depth)}, 1.0]")
    rows = dict(describe(path).rows)
    assert REFUSED in rows["problem"]
    shown = rows["layer scales"]
    assert len(shown) <= 100 and "\n" not in shown and shown.startswith("'[[[")
    assert main(["show", str(path)]) == 0
    assert capsys.readouterr().out.count("[") < 100  # a summary, not the value
    assert main(["show", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 60  # no nested list written out level by level
    assert json.loads(out)["fields"]["layer_scales"] == f"[{nested(depth)}, 1.0]"  # programs get the text itself


def test_scales_a_load_takes_are_shown_as_they_are(tmp_path, capsys):
    model = toy_model()
    lowdim.inject(model, lowdim.get_space("lidb"), ["unet.0", "unet.2"], seed=11)
    lowdim.Adapters(model).set_scale("default", 0.5)
    path = lowdim.save_adapter(tmp_path / "half.safetensors", model)
    assert dict(describe(path).rows)["layer scales"] == "[0.5, 0.5]"
    assert main(["show", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"]["layer_scales"] == [0.5, 0.5]
