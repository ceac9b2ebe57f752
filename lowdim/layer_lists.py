"""An adapter file's layer list: ``[name, out, in]`` per layer, as zlib-compressed JSON in its metadata."""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from pathlib import Path

from lowdim import json_text
from lowdim.errors import AdapterFileError
from lowdim.filecheck import MAX_INFLATED, checked_layers, inflate
from lowdim.spaces.base import LayerSpec


def pack_layers(layers: list[LayerSpec]) -> str:
    raw = json.dumps([[layer.name, layer.out_features, layer.in_features] for layer in layers], separators=(",", ":"))
    return "zlib:" + base64.b64encode(zlib.compress(raw.encode(), 9)).decode()


def unpack_layers(packed: str, path: Path) -> list[LayerSpec]:
    """An adapter file's 'layers' metadata (zlib-packed JSON, or plain JSON in older files), checked."""
    if packed.startswith("zlib:"):
        try:  # validate: b64decode would otherwise drop the characters it does not know and inflate the rest
            compressed = base64.b64decode(packed.removeprefix("zlib:"), validate=True)
        except binascii.Error:
            raise AdapterFileError(f"{path}: the layer list in the metadata is not valid base64") from None
        raw: str | bytes = inflate(compressed, "layer list", path)
    elif len(packed) > MAX_INFLATED:  # the bound the packed form's inflated text has, before a parse of it
        raise AdapterFileError(f"{path}: the layer list in the metadata is longer than {MAX_INFLATED >> 20} MB; "
                               f"refusing it")
    else:
        raw = packed
    try:
        entries = json_text.loads(raw)
    except ValueError as error:
        raise AdapterFileError(f"{path}: the layer list in the metadata ('layers') is corrupted ({error})") from None
    return checked_layers(entries, path)
