"""``scoped``: a context variable holds a value for one ``with`` block and gets its earlier value back after it,
however the block ends. A dozen modules keep such a setting (a command line's wording, a progress listener, a
console) per thread and per asyncio task; Python 3.14's ``with var.set(value):`` does the same, and lowdim runs
on 3.10."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def scoped(variable: ContextVar[T], value: T) -> Iterator[None]:
    """Within the block, ``variable`` is ``value``; after it, whatever it was before (set or unset)."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)
