"""Registers the built-in hypernetwork head through the same hook any plugin uses."""

from lowdim.hookspecs import hookimpl
from lowdim.hyper.network import build_transformer


@hookimpl
def register_heads(register):
    register("transformer", build_transformer)
