"""``lowdim precompute --init``: every identity starts from the same adapter instead of the space's init.

The start is a lowdim adapter file or a weight folder's mean θ, checked against the run's model, space,
layers and seed; its digest goes into the index, so a resumed run cannot switch starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

import lowdim
from lowdim.errors import LowdimError

if TYPE_CHECKING:
    from lowdim.inject import LayerSet
    from lowdim.spaces.base import Space
    from lowdim_sd.loading import SDModel


def read_start(path: Path, model: SDModel, space: Space, layer_set: LayerSet, seed: int) -> dict:
    """The start adapter's tensors, checked against this model (by loading it), space, layers and seed."""
    from lowdim.sizing import layer_specs
    from lowdim_sd.modes import ADAPTER

    if Path(path).is_dir():
        return _mean_start(Path(path), space, seed, [s.name for s in layer_specs(model.modules, layer_set)])
    probe = lowdim.Adapters(model.modules)
    info = lowdim.load_adapter(path, probe, name=ADAPTER + "_start")  # a Python identifier
    try:
        found = {"space": (info.space.name, info.space.config.to_dict()), "seed": info.seed,
                 "layers": [layer.name for layer in info.layers]}
        wanted = {"space": (space.name, space.config.to_dict()), "seed": seed,
                  "layers": [layer.name for layer in layer_specs(model.modules, layer_set)]}
        for key, value in found.items():
            if value != wanted[key]:
                raise LowdimError(f"--init {path}: its {key} differs from this precompute's ({_short(value)} "
                                  f"against {_short(wanted[key])})")
        return probe.tensors(ADAPTER + "_start")
    finally:
        probe.delete(ADAPTER + "_start")


def check_start_early(path: Path, space: Space, seed: int) -> None:
    """What can be told of an --init without the model (missing, no adapter or weight folder, another space or
    seed), before the model loads; its layers are checked against the model by ``read_start``."""
    from lowdim_sd.weight_index import read_index

    path = Path(path)
    if path.is_dir():
        index = read_index(path)
        found = {"space": (index.get("space"), index.get("space_config")), "seed": index.get("seed")}
    else:
        adapter = lowdim.read_adapter(path)
        found = {"space": (adapter.space.name, adapter.space.config.to_dict()), "seed": adapter.seed}
    wanted = {"space": (space.name, space.config.to_dict()), "seed": seed}
    for key, value in found.items():
        if value != wanted[key]:
            raise LowdimError(f"--init {path}: its {key} differs from this precompute's ({_short(value)} against "
                              f"{_short(wanted[key])})")


def _mean_start(folder: Path, space: Space, seed: int, layers: list[str]) -> dict:
    """The mean θ of a weight folder made with the same space, seed and layers."""
    from lowdim_sd.hypertrain_io import all_targets
    from lowdim_sd.weight_dataset import WeightDataset

    data = WeightDataset(folder)
    found = {"space": (data.space.name, data.space.config.to_dict()), "seed": int(data.index["seed"]),
             "layers": [layer.name for layer in data.layers]}
    wanted = {"space": (space.name, space.config.to_dict()), "seed": seed, "layers": layers}
    for key, value in found.items():
        if value != wanted[key]:
            raise LowdimError(f"--init {folder}: its {key} differs from this precompute's ({_short(value)} against "
                              f"{_short(wanted[key])})")
    return {layer: {k: v.mean(0) for k, v in params.items()} for layer, params in all_targets(data).items()}


def _short(value) -> str:
    text = str(value)
    return text if len(text) < 80 else text[:77] + "..."


def start_from(model: SDModel, start: dict, rows: int) -> None:
    """Every identity's adapter (row) starts at the same tensors."""
    from lowdim_sd.modes import ADAPTER

    with torch.no_grad():
        for layer, slot in lowdim.Adapters(model.modules).slots(ADAPTER).items():
            for name, param in slot.params.items():
                value = start[layer][name].to(param.dtype)
                param.copy_(value.expand(rows, *value.shape) if rows > 1 else value)


def start_digest(start: dict) -> str:
    """Of the start tensors themselves: the same start from a file or a folder's mean is the same recipe."""
    import hashlib

    digest = hashlib.sha256()
    for layer in sorted(start):
        for name in sorted(start[layer]):
            digest.update(f"{layer}/{name}".encode())
            digest.update(start[layer][name].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()
