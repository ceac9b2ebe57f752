"""Learned keys for the retrieval head: an identity embedding trained on pairs of photos of one person.

The retrieval head answers a face with the θ of the stored identity whose key is nearest. With raw
DINOv2 CLS tokens as keys, "nearest" mixes the face with everything else in the photo (pose, light,
clothes), so the answer is often a look-alike in those rather than in the face. A key projection
(standardize, Linear, GELU, Linear, unit norm) is trained contrastively (InfoNCE, both directions) to
map two photos of the same identity to the same point and other identities' photos away from it: a
small face-recognition head on the frozen encoder. Its only supervision is "these images show the same
person", which any face dataset with several photos per identity provides; TinyFaces renders them free.

``KeyProjection`` is the module the head stores; ``fit_key_projection`` trains it on backbone features
and ``info_nce`` is the loss, kept as a plain function so it can be tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lowdim.errors import LowdimError


def info_nce(first: Tensor, second: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE of two batches of unit keys; row i of each shows the same identity."""
    logits = first @ second.T / temperature
    target = torch.arange(len(first), device=first.device)
    return (torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)) / 2


class KeyProjection(nn.Module):
    """Flattened key tokens (B, T, D) -> unit keys (B, key_dim), standardized per input coordinate first."""

    mean: Tensor  # buffers, per input coordinate
    std: Tensor

    def __init__(self, in_features: int, hidden: int, key_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, key_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        flat = tokens.flatten(1).float()
        if flat.shape[1] != self.mean.numel():
            raise LowdimError(f"the key projection reads {self.mean.numel()} feature values per image, got "
                              f"{flat.shape[1]}: features made with another encoder_pool or encoder")
        return torch.nn.functional.normalize(self.net((flat - self.mean) / self.std), dim=-1)


@dataclass
class KeyFit:
    """How a key projection was trained, for the hypernetwork file's metadata."""

    identities: int
    images: int
    steps: int
    final_loss: float
    pair_top1: float  # share of held-in pairs whose nearest other photo is its own identity's

    def as_metadata(self) -> dict:
        return {"key_identities": self.identities, "key_images": self.images, "key_steps": self.steps,
                "key_final_loss": round(self.final_loss, 4), "key_pair_top1": round(self.pair_top1, 4)}


def fit_key_projection(projection: KeyProjection, identities: Sequence[Tensor], *, steps: int = 750,
                       batch_size: int = 256, learning_rate: float = 1e-3, weight_decay: float = 0.05,
                       temperature: float = 0.2, seed: int = 0,
                       progress: Callable[[float], None] | None = None) -> KeyFit:
    """Train ``projection`` on key tokens of several photos per identity: ``identities[i]`` is (n_i >= 2, T, D).

    Each step draws ``batch_size`` identities and two different photos of each. The defaults were chosen on
    TinyFaces validation identities (docs/ladder.md, rung 10): a warmer temperature than SimCLR's 0.07 keeps
    look-alikes near each other, which is what a retrieval key needs, not only the exact identity on top.
    """
    counts = torch.tensor([len(photos) for photos in identities])
    if len(identities) < 2 or bool((counts < 2).any()):
        raise LowdimError("key training needs two or more identities, each with two or more photos")
    flat = torch.cat([photos.flatten(1).float() for photos in identities])
    starts = torch.cumsum(counts, 0) - counts
    projection.mean.copy_(flat.mean(0))
    projection.std.copy_(flat.std(0) + 1e-4)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(projection.net.parameters(), learning_rate, weight_decay=weight_decay)
    batch = min(batch_size, len(identities))
    loss = torch.zeros(())
    projection.train()
    for _ in range(steps):
        chosen = torch.randperm(len(identities), generator=generator)[:batch]
        first, second = _two_photos(counts[chosen], generator)
        loss = info_nce(projection(flat[starts[chosen] + first]), projection(flat[starts[chosen] + second]),
                        temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(loss.item())
    projection.eval()
    return KeyFit(len(identities), len(flat), steps, float(loss.item()), _pair_top1(projection, flat, starts))


def _two_photos(counts: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two different photo indices per identity, uniformly among its photos."""
    first = (torch.rand(len(counts), generator=generator) * counts).long()
    offset = 1 + (torch.rand(len(counts), generator=generator) * (counts - 1)).long()
    return first, (first + offset) % counts


@torch.no_grad()
def _pair_top1(projection: KeyProjection, flat: Tensor, starts: Tensor, limit: int = 1000) -> float:
    """On up to ``limit`` identities: how often the first photo's nearest second photo is its own."""
    chosen = starts[:limit]
    first, second = projection(flat[chosen]), projection(flat[chosen + 1])
    return float(((first @ second.T).argmax(1) == torch.arange(len(chosen))).float().mean())
