"""TinyFaces: a procedural cartoon-face world for HyperDreamBooth experiments."""

from .grid import render_grid, save_grid
from .identity import (
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
from .model_files import model_path
from .nuisance import Nuisance
from .styles import STYLE_TEMPLATES, STYLES, TRAINING_SUBJECT, prompt_for
from .world import Batch, iter_dataset, render, render_tensor, sample_dataset

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
