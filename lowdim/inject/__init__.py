"""Injection of adapters into any torch model."""

from typing import TYPE_CHECKING

from lowdim._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ below loads each on first use
    from lowdim.inject.checkpointing import checkpointing_with_overrides
    from lowdim.inject.layer import AdapterLayer, AdapterSlot
    from lowdim.inject.manager import AdapterInfo, Adapters, inject
    from lowdim.inject.relax import relax_rank
    from lowdim.inject.select import LayerSet, candidate_layers, covers, exact_layers, select_layers
    from lowdim.inject.stacked import stacked_factors

# Loaded on first use: `lowdim.inject.select` (LayerSet, which plugins name at import time) stays torch-free.
# At run time only: a checker that sees a module __getattr__ takes any unknown name (a typo) for one of its results.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "lowdim.inject.checkpointing": ("checkpointing_with_overrides",),
        "lowdim.inject.layer": ("AdapterLayer", "AdapterSlot"),
        "lowdim.inject.manager": ("AdapterInfo", "Adapters", "inject"),
        "lowdim.inject.relax": ("relax_rank",),
        "lowdim.inject.select": ("LayerSet", "candidate_layers", "covers", "exact_layers", "select_layers"),
        "lowdim.inject.stacked": ("stacked_factors",),
    })
del lazy_exports

__all__ = [
    "AdapterInfo", "AdapterLayer", "AdapterSlot", "Adapters", "LayerSet",
    "candidate_layers", "checkpointing_with_overrides", "covers", "exact_layers", "inject", "relax_rank",
    "select_layers", "stacked_factors",
]
