"""What a model backend offers the generic core. Backends register through ``register_backends``."""

from __future__ import annotations

from torch import nn

from lowdim.errors import LowdimError
from lowdim.inject.select import LayerSet


class Backend:
    """Base class for model backends (the SD backend lives in ``lowdim_sd``).

    A backend names an architecture, its layer sets, and how to build it. ``skeleton()`` builds
    the architecture on the meta device, which is enough to count parameters without weights.
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    description: str = ""
    layer_sets: dict[str, LayerSet] = {}
    default_layer_set: str = ""
    # Its subjects are face photos, cropped to the face by default (False: a face detector can't read them).
    crops_faces: bool = True
    # A trained hypernetwork checkpoint for this model: `lowdim personalize` starts from its prediction.
    default_hypernet: str | None = None
    # Prompts for preview grids after personalization; [V] stands for the subject's identifier.
    preview_prompts: tuple[str, ...] = ("a photo of a [V] face", "a painting of a [V] face in the style of van gogh",
                                        "a pencil sketch of a [V] face", "a [V] face at night")
    # Prompts of `lowdim bench quality`: styles and recontextualisations, like the paper's 30.
    bench_prompts: tuple[str, ...] = (
        "a photo of a [V] face", "a close-up portrait of a [V] face", "a pencil sketch of a [V] face",
        "a painting of a [V] face in the style of van gogh", "a pop-art poster of a [V] face",
        "a [V] face at night", "a [V] face on a red background", "a [V] face wearing a hat",
        "a [V] face at the beach", "a [V] face in a cyberpunk city", "a watercolor painting of a [V] face",
        "a [V] face wearing sunglasses",
    )

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
