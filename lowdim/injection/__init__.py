"""Injection of adapters into any torch model."""

from typing import TYPE_CHECKING

from lowdim._lazy import lazy_exports

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ below loads each on first use
    from lowdim.injection.checkpointing import checkpointing_with_overrides
    from lowdim.injection.layer import AdapterLayer, AdapterSlot
    from lowdim.injection.manager import AdapterInfo, Adapters, inject
    from lowdim.injection.relax import relax_rank
    from lowdim.injection.select import LayerSet, candidate_layers, covers, exact_layers, select_layers
    from lowdim.injection.stacked import stacked_factors

# Loaded on first use: `lowdim.injection.select` (LayerSet, which plugins name at import time) stays torch-free.
# At run time only: a checker that sees a module __getattr__ takes any unknown name (a typo) for one of its results.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {
        "lowdim.injection.checkpointing": ("checkpointing_with_overrides",),
        "lowdim.injection.layer": ("AdapterLayer", "AdapterSlot"),
        "lowdim.injection.manager": ("AdapterInfo", "Adapters", "inject"),
        "lowdim.injection.relax": ("relax_rank",),
        "lowdim.injection.select": ("LayerSet", "candidate_layers", "covers", "exact_layers", "select_layers"),
        "lowdim.injection.stacked": ("stacked_factors",),
    })
del lazy_exports

__all__ = [
    "AdapterInfo", "AdapterLayer", "AdapterSlot", "Adapters", "LayerSet",
    "candidate_layers", "checkpointing_with_overrides", "covers", "exact_layers", "inject", "relax_rank",
    "select_layers", "stacked_factors",
]
