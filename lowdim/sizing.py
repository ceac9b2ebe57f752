"""How many numbers an adapter trains and stores, per layer group, without any weights."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from lowdim.injection.select import LayerSet, select_layers
from lowdim.spaces.base import LayerSpec, Space

BYTES = {"fp32": 4, "fp16": 2}


@dataclass
class GroupRow:
    group: str
    layers: int = 0
    params: int = 0

    @property
    def bytes_fp32(self) -> int:
        return self.params * BYTES["fp32"]

    @property
    def bytes_fp16(self) -> int:
        return self.params * BYTES["fp16"]


@dataclass
class SizeReport:
    space: str
    config: dict
    layer_set: str
    rows: list[GroupRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    file_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> GroupRow:
        total = GroupRow("total")
        for row in self.rows:
            total.layers += row.layers
            total.params += row.params
        return total

    def to_dict(self) -> dict:
        rows = [{**asdict(r), "bytes_fp32": r.bytes_fp32, "bytes_fp16": r.bytes_fp16} for r in [*self.rows, self.total]]
        return {"space": self.space, "config": self.config, "layer_set": self.layer_set, "groups": rows,
                "notes": self.notes, "file_bytes": self.file_bytes}


def adapter_file_bytes(model: nn.Module, space: Space, layer_set: LayerSet, dtype: str = "fp16") -> int:
    """Size on disk of a fresh adapter file, written for real (the model may live on the meta device)."""
    from lowdim.files import save_adapter
    from lowdim.injection.manager import Adapters

    adapters = Adapters(model)
    adapters.add("sizing", space, layer_set, device="cpu")
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = save_adapter(Path(folder) / "sizing.safetensors", adapters, "sizing", dtype=dtype)
            return path.stat().st_size
    finally:
        adapters.delete("sizing")


def layer_specs(model: nn.Module, layer_set: LayerSet) -> list[LayerSpec]:
    return [LayerSpec(name, m.weight.shape[0], m.weight.shape[1]) for name, m in select_layers(model, layer_set)]


def size_report(
    model: nn.Module, space: Space, layer_set: LayerSet, group_of: Callable[[str], str] = lambda n: n
) -> SizeReport:
    report = SizeReport(space.name, space.config.to_dict(), layer_set.name)
    rows: dict[str, GroupRow] = {}
    for layer in layer_specs(model, layer_set):
        row = rows.setdefault(group_of(layer.name), GroupRow(group_of(layer.name)))
        row.layers += 1
        row.params += space.num_params(layer)
        if note := space.describe(layer):
            report.notes.append(note)
    report.rows = list(rows.values())
    return report
