"""Injection of adapters into any torch model."""

from lowdim.inject.layer import AdapterLayer, AdapterSlot
from lowdim.inject.manager import AdapterInfo, Adapters, inject, relax_rank
from lowdim.inject.select import LayerSet, candidate_layers, covers, exact_layers, select_layers
from lowdim.inject.stacked import stacked_factors

__all__ = [
    "AdapterInfo", "AdapterLayer", "AdapterSlot", "Adapters", "LayerSet",
    "candidate_layers", "covers", "exact_layers", "inject", "relax_rank", "select_layers", "stacked_factors",
]
