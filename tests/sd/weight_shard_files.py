"""A shard that fits a hand-written weight index (tests/sd, on the path as pytest puts it): since train-hypernet,
show and a precompute rerun check every shard an index names against it, a test's index needs its shard."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

import lowdim
from lowdim.spaces.base import LayerSpec


def write_shard_for(folder: Path, index: dict) -> None:
    """Zero θ for every identity of ``index``, each at its row of its shard, as precompute would store them."""
    space = lowdim.get_space(index["space"], index["space_config"])
    for shard in {entry["shard"] for entry in index["identities"]}:
        entries = [entry for entry in index["identities"] if entry["shard"] == shard]
        rows = max(entry["row"] for entry in entries) + 1
        names = [""] * rows
        for entry in entries:
            names[entry["row"]] = entry["name"]
        tensors = {f"{name}/{param}": torch.zeros(rows, *shape) for name, out, inp in index["layers"]
                   for param, shape in space.param_shapes(LayerSpec(name, out, inp)).items()}
        save_file(tensors, str(Path(folder) / shard),
                  metadata={"format": "lowdim.weights.shard", "identities": json.dumps(names)})
