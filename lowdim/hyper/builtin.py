"""Registers the built-in hypernetwork heads through the same hook any plugin uses."""

from collections.abc import Callable
from typing import Any

from lowdim.hookspecs import hookimpl


@hookimpl
def register_heads(register: Callable[[str, Callable[..., Any]], None]) -> None:
    from lowdim.hyper.network import build_transformer  # here, not above: loading plugins needs no torch
    from lowdim.hyper.retrieval import build_retrieval

    register("transformer", build_transformer)
    register("retrieval", build_retrieval)
