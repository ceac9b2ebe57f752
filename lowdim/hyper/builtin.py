"""Registers the built-in hypernetwork heads through the same hook any plugin uses."""

from __future__ import annotations

from lowdim.hookspecs import RegisterHead, hookimpl


@hookimpl
def register_heads(register: RegisterHead) -> None:
    from lowdim.hyper.network import build_transformer  # here, not above: loading plugins needs no torch
    from lowdim.hyper.retrieval import build_retrieval

    register("transformer", build_transformer)
    register("retrieval", build_retrieval)
