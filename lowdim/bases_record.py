"""The checksum of its frozen bases an adapter file records (``basis_checksum``), and the checks against it.

Bases made from the seed are not stored, only their checksum: loading and exporting make them again and compare.
Every lowdim writes the key: 16 lowercase hex digits (``F.basis_checksum``) where the space makes bases, "" where
it makes none (LoRA). A file whose space makes bases but that records none was edited, so it is refused rather
than taken as having nothing to check; ``verify_bases=False`` is the opt-out for both that and a mismatch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from lowdim import functional as F
from lowdim.errors import AdapterFileError
from lowdim.filecheck import printable_name
from lowdim.spaces.base import LayerSpec, Space

if TYPE_CHECKING:
    from lowdim.files import AdapterFile

LayerTensors = dict[str, dict[str, Tensor]]
CHECKSUM = re.compile(r"[0-9a-f]{16}")  # F.basis_checksum's 16 hex digits, as hexdigest() writes them


def regenerate(space: Space, layer: LayerSpec, seed: int) -> dict[str, Tensor]:
    return {k: v.float() for k, v in space.make_buffers(layer, F.layer_seed(seed, layer.name)).items()}


def checksum(buffers: LayerTensors, layers: list[LayerSpec]) -> str | None:
    """The checksum of ``buffers`` as a file records it; None: the space has no bases."""
    return layers_checksum(buffers[layer.name] for layer in layers)


def layers_checksum(per_layer: Iterable[dict[str, Tensor]]) -> str | None:
    """The checksum a file records of each layer's bases, in its layer order, taken one layer at a time (a reader
    without a model never holds them all: ``lowdim show``); None: the space made none."""
    made_any = False

    def flat() -> Iterator[Tensor]:
        nonlocal made_any
        for bases in per_layer:
            made_any = made_any or bool(bases)
            yield from (bases[key] for key in sorted(bases))

    digest = F.basis_checksum(flat())
    return digest if made_any else None


def recorded_seed(metadata: dict[str, str], path: Path) -> int:
    """The file's 'seed' (what its bases are made from), or the one line every load refuses a missing one or one that
    is no integer with (``lowdim show`` quotes it as the file's problem)."""
    if "seed" not in metadata:
        raise AdapterFileError(f"{path}: incomplete metadata: no 'seed' (what its bases are made from)")
    try:
        return int(metadata["seed"])
    except ValueError:
        shown = printable_name(metadata["seed"])
        raise AdapterFileError(f"{path}: corrupted metadata: 'seed' is {shown}, not an integer") from None


def recorded_checksum(metadata: dict[str, str], path: Path) -> str | None:
    """The file's 'basis_checksum' (None: it records none), or one line naming a value that is no checksum: compared,
    it would be refused as bases that differ, blaming the platform for a damaged header."""
    value = metadata.get("basis_checksum")
    if not value:
        return None
    if not CHECKSUM.fullmatch(value):
        raise AdapterFileError(f"{path}: the basis_checksum in the metadata is not 16 lowercase hex digits, got "
                               f"{printable_name(value, 60)}; the file is damaged (re-save it from its source)")
    return value


def check_bases(adapter: AdapterFile, digest: str | None) -> None:
    """Refuse ``adapter`` where ``digest`` (of the bases made here from its seed; None: the space made none)
    is not what the file records."""
    if digest is not None and adapter.checksum is None:
        raise unrecorded_bases(adapter)
    if digest is None and adapter.checksum is not None:
        raise AdapterFileError(
            f"{adapter.path}: it records a basis_checksum, though its space '{adapter.space.name}' makes no frozen "
            f"bases and no lowdim records one for it: the metadata was edited; load it with verify_bases=False to "
            f"use it unchecked")
    if digest != adapter.checksum:
        raise bases_mismatch(adapter)


def unrecorded_bases(adapter: AdapterFile) -> AdapterFileError:
    return AdapterFileError(
        f"{adapter.path}: it records no basis_checksum, though its space '{adapter.space.name}' makes frozen bases "
        f"from the seed, and every lowdim records one for those: the metadata was edited, so the bases it was "
        f"trained with cannot be checked; load it with verify_bases=False to use it unchecked")


def bases_mismatch(adapter: AdapterFile) -> AdapterFileError:
    return AdapterFileError(
        f"{adapter.path}: the frozen bases made here from its seed and layer list differ from the ones the adapter "
        f"was trained with: its seed, layer list or space config was edited after it was saved, or (an unedited "
        f"file) this platform makes other bases than the one that saved it (checksum mismatch); re-save it with "
        f"store_bases=True on the original machine"
        + _plugin_bases_words(adapter)
    )


def _plugin_bases_words(adapter: AdapterFile) -> str:
    """A plugin's make_buffers may read more than the seed (a salted hash(), the global RNG): then the bases differ
    from process to process, on the machine that saved the file too, and the platform is not to blame alone."""
    from lowdim.plugins import is_lowdims_own
    from lowdim.registry import get_registry, space_package

    registry, name = get_registry(), adapter.space.name
    entry = registry.spaces.get(name)
    if entry is None or is_lowdims_own(registry.manager, entry.plugin):
        return ""
    package = space_package(name, registry) or adapter.metadata.get("space_package")
    where = f"space '{name}'" + (f" (package {package})" if package else "")
    return (f", or {where} makes its bases from something other than the seed, and then every machine regenerates "
            f"others, the original one too: its make_buffers must depend on the seed alone (tell its authors)")
