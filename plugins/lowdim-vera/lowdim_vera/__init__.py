"""lowdim-vera: the VeRA weight space as a lowdim plugin.

The entry point ``vera = "lowdim_vera"`` registers this module with pluggy, which finds the
hookimpl below; importing lowdim_vera alone registers nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from lowdim.hookspecs import hookimpl
from lowdim_vera.space import VeraConfig, VeraSpace

__version__ = "0.1.0"
__all__ = ["VeraConfig", "VeraSpace", "register_spaces"]


@hookimpl
def register_spaces(register: Callable[[type], None]) -> None:
    register(VeraSpace)
