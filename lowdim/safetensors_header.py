"""safetensors files whose bytes depend on their contents alone.

safetensors 0.8 writes the ``__metadata__`` map in the order of a Rust HashMap, whose seed differs from process to
process: two saves of the same tensors and metadata then differ in their bytes, which users and CI compare by hash.
The header is JSON at the start of the file, its length fixed by an 8-byte prefix; the same keys sorted take the
same bytes, so it is rewritten in place, without reading the tensors after it (a merged model's file is GBs).
"""

from __future__ import annotations

import json
import os
import struct

from lowdim import json_text


def sort_header_metadata(path: str | os.PathLike) -> None:
    """Rewrite the header of the safetensors file ``path`` with its ``__metadata__`` keys sorted, in place; a
    header whose sorted form would not take exactly its bytes (another writer's escaping) is left as it is."""
    with open(path, "r+b") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        raw = file.read(length)
        text = raw.decode("utf-8").rstrip(" ")  # safetensors pads the header with spaces to 8-byte alignment
        header = json_text.loads(text)
        metadata = header.get("__metadata__")
        if not isinstance(metadata, dict) or list(metadata) == sorted(metadata):
            return
        header["__metadata__"] = dict(sorted(metadata.items()))
        # The tensors' entries keep their order (by offset, as written), so only the metadata's order changes.
        rewritten = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(rewritten) != len(text.encode("utf-8")):
            return
        file.seek(8)
        file.write(rewritten + raw[len(rewritten):])
