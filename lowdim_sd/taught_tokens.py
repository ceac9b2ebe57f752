"""The words a model `lowdim merge` wrote was taught, read back from the record merge left in it.

Its adapters are in its weights, so no adapter file is left to say which word calls its subject: `lowdim
generate -m MERGED -p 'a [V] face'` reads the word here (`lowdim show` reads the same record).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class Tokens(list):
    """The attached adapters' identifier tokens, one per adapter in order ('' where a file records none), and
    ``taught``: the words the model itself was taught (``merged_tokens``), None for a model no merge wrote."""

    def __init__(self, tokens: Iterable[str] = (), taught: list[str] | None = None):
        super().__init__(tokens)
        self.taught = taught


def merged_tokens(source: str) -> list[str] | None:
    """The tokens a model `lowdim merge` wrote records, [] where its record names none; None for any other
    model."""
    from lowdim_sd.merged_model import read_merge_record

    record = read_merge_record(Path(source).expanduser())
    if record is None:
        return None
    words = record.get("tokens")
    return [str(word) for word in words if word] if isinstance(words, list) else []


def with_taught(tokens: list[str] | None, source: str) -> Tokens:
    """``tokens`` as ``attach_adapters`` returns them: a plain list (or None: no adapter) gains the words the
    model loaded from ``source`` was taught."""
    return tokens if isinstance(tokens, Tokens) else Tokens(tokens or [], merged_tokens(source))
