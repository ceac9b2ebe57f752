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
from lowdim.option_words import either

if TYPE_CHECKING:
    from lowdim.injection import LayerSet
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
                raise LowdimError(f"{_named(path)}: {_difference(key, value, wanted[key])}")
        return probe.tensors(ADAPTER + "_start")
    finally:
        probe.delete(ADAPTER + "_start")


def check_start_early(path: Path, space: Space, seed: int) -> None:
    """What can be told of an --init without the model (missing, no adapter or weight folder, another space or
    seed; a weight folder's damaged shard, or a row of NaN or Inf, which its mean would carry into every identity),
    before the model loads; its layers are checked against the model by ``read_start``."""
    from lowdim_sd.weight_index import read_index
    from lowdim_sd.weight_shards import check_weight_folder, refuse_nonfinite

    path = Path(path)
    index = read_index(path) if path.is_dir() else None
    if index is not None:
        found = {"space": (index.get("space"), index.get("space_config")), "seed": index.get("seed")}
    else:
        adapter = lowdim.read_adapter(path)
        found = {"space": (adapter.space.name, adapter.space.config.to_dict()), "seed": adapter.seed}
    wanted = {"space": (space.name, space.config.to_dict()), "seed": seed}
    for key, value in found.items():
        if value != wanted[key]:
            raise LowdimError(f"{_named(path)}: {_difference(key, value, wanted[key])}")
    if index is not None:  # its shards, as the mean reads them once the model is in (each row: ~26K values at SD1.5)
        check_weight_folder(path, index)
        refuse_nonfinite(path, index["identities"])


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
            raise LowdimError(f"{_named(folder)}: {_difference(key, value, wanted[key])}")
    return {layer: {k: v.mean(0) for k, v in params.items()} for layer, params in all_targets(data).items()}


def _named(path: Path) -> str:
    """The start as its reader gave it: ``--init PATH`` on the command line, PrecomputeJob's field from Python."""
    return either(f"--init {path}", f"PrecomputeJob(init={str(path)!r})")


def _difference(key: str, found, wanted) -> str:
    """How an --init's ``key`` (space, seed, layers) differs from the run's, in words: a space by its name, or by
    the options that differ, never as Python reprs cut mid-dict."""
    if key == "space" and found[0] != wanted[0]:
        return f"its space is {_short(found[0])}, this precompute's is {_short(wanted[0])}"
    if key == "space" and isinstance(found[1], dict) and isinstance(wanted[1], dict):
        options = [option for option in {**wanted[1], **found[1]} if found[1].get(option) != wanted[1].get(option)]
        shown = ", ".join(f"{_name(option)}={_short(found[1].get(option))} against {_short(wanted[1].get(option))}"
                          for option in options[:3])
        return f"its space differs from this precompute's ({wanted[0]}: {shown})"
    if key == "layers" and isinstance(found, list):
        extra, missing = sorted(set(found) - set(wanted)), sorted(set(wanted) - set(found))
        shown = f"e.g. it has {extra[0]}" if extra else f"e.g. it lacks {missing[0]}" if missing else "their order"
        return f"its layers differ from this precompute's ({len(found)} against {len(wanted)}; {shown})"
    return f"its {key} differs from this precompute's ({_short(found)} against {_short(wanted)})"


def _name(option: str) -> str:
    return option if option.isidentifier() else ascii(option)[:40]


def _short(value) -> str:
    text = ascii(value) if isinstance(value, str) else str(value)  # a name read from a file: quoted and escaped
    return text if len(text) < 80 else text[:77] + "..."


def start_from(model: SDModel, start: dict, rows: int) -> None:
    """Every identity's adapter (row) starts at the same tensors."""
    from lowdim_sd.modes import ADAPTER

    with torch.no_grad():
        for layer, slot in lowdim.Adapters(model.modules).slots(ADAPTER).items():
            for name, param in slot.params.items():
                value = start[layer][name].to(param.dtype)
                param.copy_(value.expand(rows, *value.shape) if rows > 1 else value)
    from lowdim_sd.divergence import note_start

    note_start(lowdim.Adapters(model.modules).parameters(ADAPTER), [value for params in start.values()
                                                                     for value in params.values()])


def start_digest(start: dict) -> str:
    """Of the start tensors themselves: the same start from a file or a folder's mean is the same recipe."""
    import hashlib

    digest = hashlib.sha256()
    for layer in sorted(start):
        for name in sorted(start[layer]):
            digest.update(f"{layer}/{name}".encode())
            digest.update(start[layer][name].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def refuse_a_hypernet_run(out: Path) -> None:
    """One line when ``out`` holds a train-hypernet run (its hypernetwork, told by the file's header, or its step
    folders): shards and an index.json written among them would make a folder each tool tells as only one thing.
    A weight folder of precompute's own (a resume) holds neither."""
    from lowdim_sd.checkpoint_reading import step_folders
    from lowdim_sd.checkpoints import FOLDER as CHECKPOINTS
    from lowdim_sd.hypernet_folders import (
        HYPERNET_FILE,
        is_hypernet,  # by the file's header
    )

    out = Path(out)
    steps = step_folders(out / CHECKPOINTS)
    if is_hypernet(out / HYPERNET_FILE):
        held = f"its {HYPERNET_FILE}"
    elif steps:
        held = f"checkpoints up to {steps[-1].name}"
    else:
        return
    raise LowdimError(f"{out}: holds a train-hypernet run ({held}); precompute writes its weights elsewhere: "
                      f"{either('pass another -o', 'pass another out')}")
