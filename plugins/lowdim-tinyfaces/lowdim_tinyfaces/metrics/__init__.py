"""Metric models for TinyFaces: identity fidelity and style (prompt) following.

``load_identity_encoder()`` is the analogue of the paper's Face Rec metric,
``load_style_classifier()`` of CLIP-T. Both read committed safetensors + JSON
files from ``weights/`` (see docs/metrics.md).
"""

from .data import degrade, split_of
from .identity import IdentityEncoder, load_identity_encoder
from .style import StyleClassifier, load_style_classifier

__all__ = [
    "IdentityEncoder",
    "StyleClassifier",
    "degrade",
    "load_identity_encoder",
    "load_style_classifier",
    "split_of",
]
