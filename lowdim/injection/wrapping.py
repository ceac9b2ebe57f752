"""Putting an ``AdapterLayer`` in place of a model's layer, and the layer back.

A layer may be held under two names (``self.b = self.a``) or by a parent held under two names; it is one
layer with one weight, so its wrapper takes its place everywhere it is held: the update then acts on every
call, as merging it into that one weight would.
"""

from __future__ import annotations

from torch import nn

from lowdim.injection.layer import AdapterLayer

Holders = dict[int, list[tuple[nn.Module, str]]]


def module_holders(model: nn.Module) -> Holders:
    """id of each module under ``model`` -> every (parent, attribute) that holds it."""
    found: Holders = {}
    for parent in model.modules():  # a parent held twice is listed once: one setattr reaches both names
        for attribute, child in parent._modules.items():
            if child is not None:
                found.setdefault(id(child), []).append((parent, attribute))
    return found


def wrap(model: nn.Module, layer_name: str, holders: Holders) -> AdapterLayer:
    """The layer's wrapper, made and put in its place unless it has one (``holders``: ``module_holders(model)``,
    read once for all the layers one adapter wraps)."""
    parent_name, _, child = layer_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    current = getattr(parent, child)
    if isinstance(current, AdapterLayer):
        return current
    wrapper = AdapterLayer(current, layer_name)
    wrapper.train(current.training)  # a model put in eval() before the inject stays in eval (no adapter dropout)
    for holder, attribute in holders.get(id(current), [(parent, child)]):
        setattr(holder, attribute, wrapper)
    return wrapper


def unwrap(wrapper: AdapterLayer, holders: Holders) -> None:
    """The wrapped layer back in every place the wrapper took (``holders``: ``module_holders`` of the model)."""
    for holder, attribute in holders.get(id(wrapper), []):
        setattr(holder, attribute, wrapper.base_layer)
