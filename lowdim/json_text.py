"""JSON read from files other people made: metadata fields, index and record files.

Text nested past a small bound is refused as a ``ValueError`` (``NestedTooDeeply``), which every reader already
catches and names the file and field for. ``json.loads`` itself raises ``RecursionError`` (not ``ValueError``)
only on text nested past what its parser takes (about a hundred thousand deep); below that, a value nested a
thousand deep parses, and then crashes every recursive walker after it (config checks, ``==``, ``repr``). So the
bound is checked once here, and every value a reader gets from this module is safe to walk recursively.
"""

from __future__ import annotations

import json
from typing import Any

# Levels of nested lists and objects: lowdim's own files nest a few (a stack space's config: 4 per stacked space),
# diffusers' and transformers' configs about 4, so 100 is far above anything a tool writes, and far below Python's
# recursion limit (1000), which every recursive walker shares with its callers.
MAX_NESTING = 100


class NestedTooDeeply(ValueError):
    """JSON nested deeper than lowdim reads: damaged or hostile, never what a tool writes."""


def loads(text: str | bytes, **options: Any) -> Any:
    """``json.loads(text, **options)``; text nested more than ``MAX_NESTING`` levels raised as ``NestedTooDeeply``
    (a ValueError)."""
    try:
        value = json.loads(text, **options)
    except RecursionError:
        raise NestedTooDeeply("JSON nested too deeply") from None
    opened = text.count(b"[") + text.count(b"{") if isinstance(text, bytes) else text.count("[") + text.count("{")
    if opened > MAX_NESTING and not _nested_within(value, MAX_NESTING):  # fewer openings: no need to walk
        raise NestedTooDeeply(f"JSON nested too deeply (more than {MAX_NESTING} levels)")
    return value


def loads_keeping_long_numbers(text: str | bytes) -> Any:
    """``loads(text)``, but an integer of more digits than Python converts (4,300), which ``json.loads`` fails on,
    kept as its text (its digits, a leading "-" on a negative one): a format version a newer writer may have
    written, to be compared as text (``file_fit.format_version_problem``) rather than failing the whole file."""
    return loads(text, parse_int=_int_or_digits)


def _int_or_digits(digits: str) -> int | str:
    try:
        return int(digits)
    except ValueError:  # past sys.get_int_max_str_digits()
        return digits


def _nested_within(value: Any, bound: int) -> bool:
    """Whether ``value``'s lists and dicts nest at most ``bound`` levels: walked level by level, with no recursion,
    each container looked at once (a flat list of a million strings costs one pass over it)."""
    level = [value] if isinstance(value, (list, tuple, dict)) else []
    depth = 0
    while level:
        depth += 1
        if depth > bound:
            return False
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (list, tuple, dict))]
    return True
