"""The words a model `lowdim merge` wrote was taught, read back from the record merge left in it.

Its adapters are in its weights, so no adapter file is left to say which word calls its subject: `lowdim
generate -m MERGED -p 'a [V] face'` reads the word here (`lowdim show` reads the same record).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


class Tokens(list):
    """The attached adapters' identifier tokens, one per adapter in order ('' where a file records none), and
    ``taught``: the words the model itself was taught (``merged_tokens``), None for a model no merge wrote."""

    def __init__(self, tokens: Iterable[str] = (), taught: list[str] | None = None):
        super().__init__(tokens)
        self.taught = taught


def merged_tokens(source: str) -> list[str] | None:
    """The tokens a model `lowdim merge` wrote records (a single file: in its metadata; a diffusers folder: in
    its record file), [] where its record names none; None for any other model, or one not read here."""
    try:
        text = _record_text(Path(source).expanduser())
        record = json.loads(text) if text is not None else None
    except (OSError, ValueError):
        return None
    if record is None:
        return None
    words = record.get("tokens") if isinstance(record, dict) else None
    return [str(word) for word in words if word] if isinstance(words, list) else []


def _record_text(path: Path) -> str | None:
    """The merge record's JSON text ("{}" for a merged file from before records); None: no merged model."""
    from lowdim_sd.ldm_checkpoint import BASE_MODEL_KEY, METADATA
    from lowdim_sd.merged_model import RECORD, RECORD_KEY

    if path.is_dir():
        return (path / RECORD).read_text(errors="replace") if (path / RECORD).is_file() else None
    if not (path.is_file() and path.suffix.lower() == ".safetensors"):
        return None
    metadata = _metadata(path)  # a merged file as `lowdim show` tells one: lowdim's mark, and a record or a base
    if metadata.get("lowdim") != METADATA["lowdim"] or not (RECORD_KEY in metadata or BASE_MODEL_KEY in metadata):
        return None
    return metadata.get(RECORD_KEY) or "{}"


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            return dict(file.metadata() or {})
    except Exception:  # safetensors raises its own error types; the model loaded, so this is not the place to say
        return {}


def with_taught(tokens: list[str] | None, source: str) -> Tokens:
    """``tokens`` as ``attach_adapters`` returns them: a plain list (or None: no adapter) gains the words the
    model loaded from ``source`` was taught."""
    return tokens if isinstance(tokens, Tokens) else Tokens(tokens or [], merged_tokens(source))
