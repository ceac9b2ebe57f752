"""What a model backend offers the generic core. Backends register through ``register_backends``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lowdim.errors import LowdimError
from lowdim.inject.select import LayerSet

if TYPE_CHECKING:
    from torch import nn


class Backend:
    """Base class for model backends (the SD backend lives in ``lowdim_sd``).

    A backend names an architecture, its layer sets, and how to build it. ``skeleton()`` builds
    the architecture on the meta device, which is enough to count parameters without weights.
    What a backend's workflows need beyond that (the SD backend's face prompts, say) lives on
    the backend's own subclass, not here.
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    description: str = ""
    layer_sets: dict[str, LayerSet] = {}
    default_layer_set: str = ""

    def skeleton(self) -> nn.Module:
        raise NotImplementedError

    def layer_group(self, layer_name: str) -> str:
        """A coarse label for summary tables; by default the first and last name components."""
        parts = layer_name.split(".")
        return f"{parts[0]} … {parts[-1]}" if len(parts) > 1 else layer_name

    def resolve_layer_set(self, name_or_patterns: str | None) -> LayerSet:
        """A named layer set, or comma-separated glob patterns given by the user."""
        key = name_or_patterns or self.default_layer_set
        if key in self.layer_sets:
            return self.layer_sets[key]
        if any(ch in key for ch in "*?.[") or key.startswith("re:"):
            return LayerSet.from_patterns(key)
        known = ", ".join(self.layer_sets)
        raise LowdimError(f"unknown layer set '{key}' for {self.name}; known: {known}, or give glob patterns")
