"""Style classifier: the TinyFaces analogue of the paper's CLIP-T metric.

A small CNN predicts which of the six :data:`~lowdim_tinyfaces.STYLES` a
32x32 picture shows; prompt following is the rate at which a generated image
is classified as the style its prompt asked for.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..styles import STYLES
from .nets import conv_bn, load_into, load_weights

NAME = "style_classifier"
DEFAULT_CONFIG: dict = {
    "arch": "StyleClassifier",
    "widths": [16, 32, 64],
    "styles": list(STYLES),
    "image_size": 32,
    "input_range": [-1.0, 1.0],
}


class StyleClassifier(nn.Module):
    """32x32 image -> logits over the styles; ``predict`` / ``probs`` for inference."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        self.config = dict(DEFAULT_CONFIG if config is None else config)
        w1, w2, w3 = self.config["widths"]
        self.features = nn.Sequential(
            *conv_bn(3, w1),
            nn.MaxPool2d(2),
            *conv_bn(w1, w2),
            nn.MaxPool2d(2),
            *conv_bn(w2, w3),
            nn.MaxPool2d(2),  # 4x4
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(w3 * 16, 64), nn.ReLU(), nn.Linear(64, len(self.config["styles"]))
        )

    @property
    def styles(self) -> list[str]:
        return list(self.config["styles"])

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.features(images))

    @torch.no_grad()
    def logits(self, images: Tensor, batch_size: int = 512) -> Tensor:
        outs = [self(chunk.float()) for chunk in images.split(batch_size)]
        return torch.cat(outs) if outs else images.new_zeros(0, len(self.styles))

    @torch.no_grad()
    def probs(self, images: Tensor) -> Tensor:
        """Style probabilities (N, num_styles) in ``STYLES`` order."""
        return self.logits(images).softmax(1)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Predicted style ids (N,) int64 (index into ``STYLES``)."""
        return self.logits(images).argmax(1)


def load_style_classifier(directory: str | Path | None = None) -> StyleClassifier:
    """The committed classifier (``weights/style_classifier.{safetensors,json}``), in eval mode."""
    config, tensors = load_weights(NAME, None if directory is None else Path(directory))
    return load_into(StyleClassifier(config["model"]), tensors)
