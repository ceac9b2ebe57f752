"""What identifies an adapter (``AdapterInfo``): its space, seed and layers. Its own module, below both the
``Adapters`` view (manager.py) that keeps one per adapter and the code that makes one (adding.py), so that neither
imports the other for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lowdim.spaces.base import LayerSpec, Space


@dataclass
class AdapterInfo:
    """What identifies an adapter: its space, seed and the layers it covers."""

    name: str
    space: Space
    seed: int
    layers: list[LayerSpec]
    layer_set: str
    batch: int | None = None
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    dropout: float = 0.0  # on the input of every layer's update while the model trains (not embeddings)

    @property
    def num_params(self) -> int:
        """One subject's trainable numbers (the paper's count, and a file's): a ``batch=K`` adapter trains K times
        as many, ``sum(p.numel() for p in adapters.parameters(name))``."""
        return sum(self.space.num_params(layer) for layer in self.layers)
