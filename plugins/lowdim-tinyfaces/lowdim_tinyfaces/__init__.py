"""TinyFaces: a procedural cartoon-face world for HyperDreamBooth experiments."""

from typing import TYPE_CHECKING

from lowdim._lazy import lazy_exports

if TYPE_CHECKING:  # what checkers see; at run time __getattr__ below loads each on first use
    from lowdim_tinyfaces.grid import render_grid, save_grid
    from lowdim_tinyfaces.identity import (
        CARDINALITIES,
        ENCODING_DIM,
        FACTOR_NAMES,
        FACTORS,
        NUM_IDENTITIES,
        Identity,
        decode_identities,
        encode_identities,
        identities_to_array,
        sample_identities,
    )
    from lowdim_tinyfaces.model_files import model_path
    from lowdim_tinyfaces.nuisance import Nuisance
    from lowdim_tinyfaces.styles import STYLE_TEMPLATES, STYLES, TRAINING_SUBJECT, prompt_for
    from lowdim_tinyfaces.world import Batch, iter_dataset, render, render_tensor, sample_dataset

# Loaded on first use (PEP 562): lowdim loads this package with its plugin module to list the plugin's
# commands in `lowdim --help`, which must not import torch, numpy or PIL. Bound at run time only: a checker
# that saw a module __getattr__ would take any misspelt name for one of these.
if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_exports(__name__, {
        f"{__name__}.grid": ("render_grid", "save_grid"),
        f"{__name__}.identity": ("CARDINALITIES", "ENCODING_DIM", "FACTOR_NAMES", "FACTORS", "NUM_IDENTITIES",
                                 "Identity", "decode_identities", "encode_identities", "identities_to_array",
                                 "sample_identities"),
        f"{__name__}.model_files": ("model_path",),
        f"{__name__}.nuisance": ("Nuisance",),
        f"{__name__}.styles": ("STYLE_TEMPLATES", "STYLES", "TRAINING_SUBJECT", "prompt_for"),
        f"{__name__}.world": ("Batch", "iter_dataset", "render", "render_tensor", "sample_dataset"),
    })
del lazy_exports

__all__ = [
    "CARDINALITIES",
    "ENCODING_DIM",
    "FACTORS",
    "FACTOR_NAMES",
    "NUM_IDENTITIES",
    "STYLES",
    "STYLE_TEMPLATES",
    "TRAINING_SUBJECT",
    "Batch",
    "Identity",
    "Nuisance",
    "decode_identities",
    "encode_identities",
    "identities_to_array",
    "iter_dataset",
    "model_path",
    "prompt_for",
    "render",
    "render_grid",
    "render_tensor",
    "sample_dataset",
    "sample_identities",
    "save_grid",
]
