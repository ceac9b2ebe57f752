"""What an adapter file's tensors are, for the lines that refuse them (``lowdim.filecheck.unflatten``), and what
besides damage makes them misfit a plugin's space."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lowdim.spaces.base import Space


class TensorKind(str):
    """What each of a file's tensors is ("a param of space 'lidb'"), as a stray one is named, with ``other_cause``:
    what besides damage makes the tensors misfit the space ("": nothing, as for lowdim's own spaces)."""

    other_cause: str

    def __new__(cls, text: str, other_cause: str = "") -> TensorKind:
        kind = super().__new__(cls, text)
        kind.other_cause = other_cause
        return kind


def other_misfit_cause(space: Space) -> str:
    """For a plugin's space, the other cause of tensors that do not fit it: the plugin's code as installed here
    shapes them, and its shapes may depend on what no file records (a module global, an environment variable),
    or another version of it wrote the file. "" for lowdim's own spaces, whose shapes are their config's alone."""
    from lowdim.plugins import is_lowdims_own
    from lowdim.registry import get_registry, space_package

    registry = get_registry()
    entry = registry.spaces.get(space.name)
    if entry is None or is_lowdims_own(registry.manager, entry.plugin):
        return ""
    package = space_package(space.name, registry)
    return (f"(or the space's shapes depend on something its config does not record, or another version of its "
            f"plugin{f' (package {package})' if package else ''} wrote the file)")
