"""lowdim-vera: the VeRA weight space as a lowdim plugin.

The entry point ``vera = "lowdim_vera"`` registers this module with pluggy, which finds the
hookimpl below; importing lowdim_vera alone registers nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lowdim.hookspecs import RegisterSpace, hookimpl
from lowdim.plugins import lazy_exports

if TYPE_CHECKING:  # what checkers see; at run time __getattr__ below loads them on first use
    from lowdim_vera.space import VeraConfig, VeraSpace

__version__ = "0.1.0"
__all__ = ["VeraConfig", "VeraSpace", "register_spaces"]


# VeraConfig and VeraSpace import torch, so they load on first use: lowdim loads this module to list plugin
# commands in `lowdim --help` (lowdim registers it by the names it holds, so __dir__ naming them loads nothing).
# Bound at run time only: a checker that saw a module __getattr__ would take any misspelt name for one of these.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {"lowdim_vera.space": ("VeraConfig", "VeraSpace")})


@hookimpl
def register_spaces(register: RegisterSpace) -> None:
    from lowdim_vera.space import VeraSpace

    register(VeraSpace)
