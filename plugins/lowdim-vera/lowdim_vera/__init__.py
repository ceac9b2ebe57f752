"""lowdim-vera: the VeRA weight space as a lowdim plugin.

The entry point ``vera = "lowdim_vera"`` registers this module with pluggy, which finds the
hookimpl below; importing lowdim_vera alone registers nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from lowdim.hookspecs import hookimpl
from lowdim.plugins import lazy_exports

__version__ = "0.1.0"
__all__ = ["VeraConfig", "VeraSpace", "register_spaces"]


# VeraConfig and VeraSpace import torch, so they load on first use: lowdim loads this module to list plugin
# commands in `lowdim --help`. No __dir__ naming them: pluggy reads every name dir() gives, which would load them.
__getattr__, _ = lazy_exports(__name__, {"lowdim_vera.space": ("VeraConfig", "VeraSpace")})


@hookimpl
def register_spaces(register: Callable[[type], None]) -> None:
    from lowdim_vera.space import VeraSpace

    register(VeraSpace)
