"""What a model backend offers the generic core. Backends register through ``register_backends``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lowdim.errors import LowdimError
from lowdim.injection.select import LayerSet

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn

    from lowdim.foreign_files import ForeignFile


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
        # Not refused at registration: a backend is usable without it by whatever does not count parameters.
        shown = f"{type(self).__module__}.{type(self).__qualname__}"
        raise LowdimError(f"backend '{self.name}' ({shown}) defines no skeleton(), the meta-device model `lowdim "
                          f"inspect` counts on: its plugin must define one")

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

    def foreign_file_kind(self, keys: Sequence[str]) -> str | None:
        """What a safetensors file that is neither lowdim's nor a LoRA or embedding is, told from its tensor names
        in this backend's architecture ("a whole model checkpoint"); None: not one this backend knows."""
        return None

    def foreign_file_advice(self, file: ForeignFile) -> str | None:
        """Where ``file`` (another tool's LoRA or embedding, or what ``foreign_file_kind`` named), handed over
        where a lowdim file goes, is used instead: the words after "not a lowdim adapter: " ("use it in ..."), or
        None where this backend has none (the core's line then says what the file is, and no more)."""
        return None


def refuse_a_broken_backend(backend: Any) -> None:
    """What a registered backend must be before any command uses it, checked as a plugin registers it (as
    ``lowdim.spaces.checks.refuse_a_broken_space_class`` does for spaces): a name ``--model`` and files carry
    unchanged, and a default layer set it has. Each is one line, which the loader turns into a warning naming
    the plugin."""
    from lowdim.spaces.checks import NAME  # one rule for the names of spaces and models

    if not isinstance(backend, Backend):
        raise TypeError(f"register_backends expects a lowdim.backends.Backend instance, got {backend!r}")
    shown = type(backend).__name__
    if isinstance(backend.aliases, str):  # ("mini") without its comma: one letter per alias
        raise LowdimError(f"backend {shown}: aliases must be a tuple of names, got the string {backend.aliases!r}")
    for key in (backend.name, *backend.aliases):
        if not isinstance(key, str) or not NAME.fullmatch(key):
            raise LowdimError(f"backend {shown}: name {key!r} must be lower-case letters, digits and . _ + - "
                              f"(starting with a letter or digit), as --model NAME and adapter files carry it")
    if backend.default_layer_set not in backend.layer_sets:
        known = ", ".join(backend.layer_sets) or "none"
        raise LowdimError(f"backend '{backend.name}' ({shown}): default_layer_set {backend.default_layer_set!r} is "
                          f"not one of its layer_sets ({known}); it is what every command uses without --layers")
