"""``lowdim show`` on an adapter whose 'seed' every load refuses (edited to no integer, or gone): a 'problem' row in
the load's own words, in ``--json`` too, and no command to use it, as for any file a load refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

import lowdim
from lowdim.errors import AdapterFileError
from lowdim_cli.main import main


def adapter_with_seed(path: Path, seed: str | None) -> Path:
    """A LiDB adapter of one linear layer whose 'seed' metadata is ``seed`` (None: no such key)."""
    model = nn.ModuleDict({"proj": nn.Linear(6, 5)})
    lowdim.inject(model, lowdim.get_space("lidb", a=4, b=3), ["proj"], seed=3)
    lowdim.save_adapter(path, model)
    with safe_open(str(path), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
        metadata = {key: value for key, value in handle.metadata().items() if key != "seed"}
    save_file(tensors, str(path), metadata={**metadata, **({} if seed is None else {"seed": seed})})
    return path


def load_words(path: Path) -> str:
    """What reading the adapter says, without the path every load error starts with."""
    with pytest.raises(AdapterFileError) as refused:
        lowdim.read_adapter(path)
    return str(refused.value).removeprefix(f"{path}: ")


@pytest.mark.parametrize("seed", ["abc", "3.5", None], ids=["word", "fraction", "missing"])
def test_a_seed_every_load_refuses_is_the_problem_row_in_the_loads_words(tmp_path, capsys, seed):
    path = adapter_with_seed(tmp_path / "me.safetensors", seed)
    refused = f"{load_words(path)}: every command that loads this file refuses it"
    assert main(["show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fields"]["problem"] == refused and shown["use"] == ""
    assert main(["show", str(path)]) == 0
    table = capsys.readouterr().out
    assert "│ problem " in table and "use it:" not in table, table


def test_the_seed_it_was_saved_with_is_no_problem(tmp_path, capsys):
    path = adapter_with_seed(tmp_path / "me.safetensors", "3")
    lowdim.read_adapter(path)  # the load takes it
    assert main(["show", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "problem" not in shown["fields"] and shown["fields"]["seed"] == 3 and shown["use"]
