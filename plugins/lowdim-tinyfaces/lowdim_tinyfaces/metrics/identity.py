"""Identity encoder: the TinyFaces analogue of the paper's Face Rec metric.

A small CNN maps a 32x32 picture in [-1, 1] to an L2-normalised embedding.
Twelve linear heads on the *normalised* embedding classify the identity
factors, so the embedding must carry every factor; a contrastive term pulls
two renders of one identity (in different styles) together. Cosine similarity
of embeddings is the identity-fidelity score.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from ..identity import FACTORS
from .nets import conv_bn, load_into, load_weights

NAME = "identity_encoder"
DEFAULT_CONFIG: dict = {
    "arch": "IdentityEncoder",
    "widths": [32, 64, 128],
    "hidden": 256,
    "embedding_dim": 64,
    "head_scale": 16.0,
    # [name, cardinality] pairs: a list keeps the head order through JSON.
    "factors": [[name, card] for name, card in FACTORS.items()],
    "image_size": 32,
    "input_range": [-1.0, 1.0],
}


class IdentityEncoder(nn.Module):
    """32x32 image -> unit embedding (``embed``) and per-factor logits (``factor_logits``).

    Architecture: conv(32) pool | conv(64) conv(64) pool | conv(128) conv(128)
    pool | 1x1 conv(64) | fc 1024->256->64, BatchNorm + ReLU after each 3x3 conv.
    """

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        self.config = dict(DEFAULT_CONFIG if config is None else config)
        w1, w2, w3 = self.config["widths"]
        dim = self.config["embedding_dim"]
        self.trunk = nn.Sequential(
            *conv_bn(3, w1),
            nn.MaxPool2d(2),  # 16x16
            *conv_bn(w1, w2),
            *conv_bn(w2, w2),
            nn.MaxPool2d(2),  # 8x8
            *conv_bn(w2, w3),
            *conv_bn(w3, w3),
            nn.MaxPool2d(2),  # 4x4: keep the layout, positions of eyes etc. matter
            nn.Conv2d(w3, 64, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 16, self.config["hidden"]),
            nn.ReLU(),
            nn.Linear(self.config["hidden"], dim),
        )
        self.heads = nn.ModuleList(nn.Linear(dim, card) for _, card in self.config["factors"])
        # Same-identity decision threshold on cosine similarity, chosen on the
        # validation identities at training time (see ``load_identity_encoder``).
        self.threshold = 0.5

    def forward(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        emb = F.normalize(self.trunk(images), dim=1)
        return emb, self._heads(emb)

    def _heads(self, emb: Tensor) -> list[Tensor]:
        # Heads read the unit embedding times a fixed scale (a cosine-style
        # classifier), so the factor codes live on the sphere used for similarity.
        scaled = emb * self.config["head_scale"]
        return [head(scaled) for head in self.heads]

    @torch.no_grad()
    def embed(self, images: Tensor, batch_size: int = 512) -> Tensor:
        """Unit-norm embeddings (N, D) of images (N, 3, 32, 32) in [-1, 1]."""
        outs = [F.normalize(self.trunk(chunk.float()), dim=1) for chunk in images.split(batch_size)]
        return torch.cat(outs) if outs else images.new_zeros(0, self.config["embedding_dim"])

    @torch.no_grad()
    def factor_logits(self, images: Tensor) -> list[Tensor]:
        """One (N, cardinality) logit tensor per factor, in ``FACTORS`` order."""
        return self._heads(self.embed(images))

    @torch.no_grad()
    def predict_factors(self, images: Tensor) -> Tensor:
        """Predicted factor levels (N, num_factors) int64."""
        logits = self.factor_logits(images)
        return torch.stack([lg.argmax(1) for lg in logits], dim=1)

    @staticmethod
    def similarity(a: Tensor, b: Tensor) -> Tensor:
        """Row-wise cosine similarity of two (N, D) embedding batches."""
        return F.cosine_similarity(a, b, dim=-1)

    def score(self, images_a: Tensor, images_b: Tensor) -> Tensor:
        """Row-wise identity similarity of two image batches."""
        return self.similarity(self.embed(images_a), self.embed(images_b))

    def same_identity(self, images_a: Tensor, images_b: Tensor) -> Tensor:
        """Row-wise verification decision (bool) at :attr:`threshold`."""
        return self.score(images_a, images_b) >= self.threshold


def load_identity_encoder(directory: str | Path | None = None) -> IdentityEncoder:
    """The committed encoder (``weights/identity_encoder.{safetensors,json}``), in eval mode."""
    config, tensors = load_weights(NAME, None if directory is None else Path(directory))
    encoder = load_into(IdentityEncoder(config["model"]), tensors)
    encoder.threshold = float(config.get("threshold", encoder.threshold))
    return encoder
