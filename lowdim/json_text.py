"""JSON read from files other people made: metadata fields, index and record files.

``json.loads`` raises ``RecursionError`` (not ``ValueError``) on text nested past what its parser takes, e.g.
``[[[[...]]]]`` a hundred thousand deep; every reader catches ``ValueError`` for damaged JSON, so this one turns
that case into a ``ValueError`` those catches already name the file and field for.
"""

from __future__ import annotations

import json
from typing import Any


class NestedTooDeeply(ValueError):
    """JSON nested deeper than Python's parser can follow: damaged or hostile, never what lowdim writes."""


def loads(text: str | bytes, **options: Any) -> Any:
    """``json.loads(text, **options)``, with text nested too deeply raised as ``NestedTooDeeply`` (a ValueError)."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise NestedTooDeeply("JSON nested too deeply") from None
