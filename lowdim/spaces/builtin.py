"""Registers the built-in spaces through the same hook any plugin uses."""

from lowdim.hookspecs import hookimpl
from lowdim.spaces.lidb import LidbSpace
from lowdim.spaces.lora import LoraSpace
from lowdim.spaces.stack import StackSpace
from lowdim.spaces.ti import TextualInversionSpace


@hookimpl
def register_spaces(register):
    register(LoraSpace)
    register(LidbSpace)
    register(StackSpace)
    register(TextualInversionSpace)
