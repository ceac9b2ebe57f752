"""A weight folder as precompute writes it (3 identities in one shard, made once per test module: ``made``), a copy
of it per test (``copy``) to damage, and what damages and reads it, for the tests of the folder checks."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open

from lowdim.errors import LowdimError
from lowdim_sd.weight_dataset import WeightDataset

SHARD = "shard-00000.safetensors"


@pytest.fixture(scope="module")
def made(weight_folders, tmp_path_factory):
    """A precompute folder of 3 identities in one shard (rows 0-2), as lowdim wrote it."""
    return weight_folders(tmp_path_factory.mktemp("weights"), "w", 3, seed=5, steps=1)


@pytest.fixture
def copy(made, tmp_path):
    """A fresh copy of ``made`` (its images stay where the index says), to damage."""
    folder = tmp_path / "w"
    shutil.copytree(made, folder)
    return folder


def read_shard(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A shard's tensors and metadata."""
    with safe_open(str(path), framework="pt") as shard:
        return {key: shard.get_tensor(key) for key in shard.keys()}, shard.metadata()  # noqa: SIM118


def edit_index(folder, change) -> None:
    index = json.loads((folder / "index.json").read_text())
    change(index)
    (folder / "index.json").write_text(json.dumps(index))


def refused(folder, pattern: str) -> str:
    """The one line reading ``folder`` is refused with."""
    with pytest.raises(LowdimError, match=pattern) as error:
        WeightDataset(folder)
    line = str(error.value)
    assert "\n" not in line, line
    return line
