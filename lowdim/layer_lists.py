"""An adapter file's layer list: ``[name, out, in]`` per layer, as zlib-compressed JSON in its metadata."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

from lowdim.errors import AdapterFileError
from lowdim.filecheck import checked_layers, inflate
from lowdim.spaces.base import LayerSpec


def pack_layers(layers: list[LayerSpec]) -> str:
    raw = json.dumps([[layer.name, layer.out_features, layer.in_features] for layer in layers], separators=(",", ":"))
    return "zlib:" + base64.b64encode(zlib.compress(raw.encode(), 9)).decode()


def unpack_layers(packed: str, path: Path) -> list[LayerSpec]:
    """An adapter file's 'layers' metadata (zlib-packed JSON, or plain JSON in older files), checked."""
    try:
        raw = inflate(base64.b64decode(packed.removeprefix("zlib:")), "layer list", path) \
            if packed.startswith("zlib:") else packed
        entries = json.loads(raw)
    except (ValueError, TypeError) as error:
        raise AdapterFileError(f"{path}: the layer list in the metadata is corrupted ({error})") from None
    return checked_layers(entries, path)
