"""Registers the built-in hypernetwork heads through the same hook any plugin uses."""

from lowdim.hookspecs import hookimpl
from lowdim.hyper.network import build_transformer
from lowdim.hyper.retrieval import build_retrieval


@hookimpl
def register_heads(register):
    register("transformer", build_transformer)
    register("retrieval", build_retrieval)
