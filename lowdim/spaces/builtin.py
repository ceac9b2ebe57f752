"""Registers the built-in spaces through the same hook any plugin uses."""

from __future__ import annotations

from lowdim.hookspecs import RegisterSpace, hookimpl


@hookimpl
def register_spaces(register: RegisterSpace) -> None:
    from lowdim.spaces.lidb import LidbSpace  # here, not above: loading plugins (for `lowdim --help`) needs no torch
    from lowdim.spaces.lora import LoraSpace
    from lowdim.spaces.stack import StackSpace
    from lowdim.spaces.ti import TextualInversionSpace

    register(LoraSpace)
    register(LidbSpace)
    register(StackSpace)
    register(TextualInversionSpace)
