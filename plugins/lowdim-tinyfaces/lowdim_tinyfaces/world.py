"""TinyFaces: render identities in styles under per-seed nuisance.

Public entry point of the world: ``render`` / ``render_tensor`` draw a batch,
``sample_dataset`` / ``iter_dataset`` produce captioned training data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from . import palette as pal
from .face import draw_face, draw_hat, make_head
from .identity import (
    CARDINALITIES,
    FACTORS,
    NUM_IDENTITIES,
    Identity,
    encode_identities,
    identities_to_array,
)
from .nuisance import Nuisance
from .styles import STYLE_INDEX, STYLES, TRAINING_SUBJECT, background, post_effect, prompt_for
from .styles import style_ids as _style_ids

__all__ = [
    "FACTORS",
    "NUM_IDENTITIES",
    "STYLES",
    "Batch",
    "Identity",
    "Nuisance",
    "encode_identities",
    "iter_dataset",
    "prompt_for",
    "render",
    "render_tensor",
    "sample_dataset",
]

IdentitiesLike = Sequence[Identity] | np.ndarray
StylesLike = str | int | Sequence[str | int]


def _canvas(size: int) -> tuple[Tensor, Tensor]:
    """Pixel-centre coordinates spanning [-1, 1], shaped (1, size, size)."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    return gx.unsqueeze(0), gy.unsqueeze(0)


def _column(values: np.ndarray) -> Tensor:
    return torch.from_numpy(values.astype(np.float32)).view(-1, 1, 1)


@torch.no_grad()
def render_tensor(
    identities: IdentitiesLike,
    styles: StylesLike,
    seeds: Sequence[int] | np.ndarray,
    size: int = 32,
) -> Tensor:
    """Render a batch as float32 (N, 3, size, size) in [-1, 1].

    ``identities`` are :class:`Identity` objects or an (N, num_factors) int
    array; ``styles`` are names / ids (or one for all); ``seeds`` fix nuisance.
    Output depends only on the inputs, never on global RNG state.
    """
    levels = torch.from_numpy(identities_to_array(identities))
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    n = levels.shape[0]
    if seeds.shape[0] != n:
        raise ValueError(f"got {seeds.shape[0]} seeds for {n} identities")
    sid = _style_ids(styles if isinstance(styles, (str, int)) else list(styles), n)
    img = _render01(levels, sid, seeds, size)
    return img.permute(0, 3, 1, 2).mul(2.0).sub(1.0).contiguous()


def _render01(levels: Tensor, sid: Tensor, seeds: np.ndarray, size: int) -> Tensor:
    """Channels-last picture in [0, 1]."""
    nz = Nuisance.from_seeds(seeds)
    gx, gy = _canvas(size)
    scale = _column(nz.scale)
    # Inverse pose transform of the grid moves and scales the whole drawing.
    x = (gx - _column(nz.dx)) / scale
    y = (gy - _column(nz.dy)) / scale
    pixel = (2.0 / size) / scale
    head = make_head(levels, x, y, pixel)
    img = background(sid, gx, gy, seeds, 2.0 / size)
    img, figure = draw_face(img, head, torch.from_numpy(nz.shirt))
    hat_colour = pal.HAT[torch.from_numpy(nz.hat)].view(-1, 1, 1, 3)
    img, hat = draw_hat(img, head, hat_colour, sid == STYLE_INDEX["hat"])
    light = _column(nz.brightness) * (1.0 + _column(nz.light_x) * gx + _column(nz.light_y) * gy)
    img = img * light.unsqueeze(-1)
    img = post_effect(img.clamp(0, 1), torch.maximum(figure, hat), sid, gx, gy, size)
    return img.clamp(0, 1)


def render(
    identities: IdentitiesLike,
    styles: StylesLike,
    seeds: Sequence[int] | np.ndarray,
    size: int = 32,
) -> np.ndarray:
    """Render a batch as uint8 (N, size, size, 3); see :func:`render_tensor`."""
    t = render_tensor(identities, styles, seeds, size)
    return t.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def styled_renders(levels: dict[str, np.ndarray], styles: Sequence[str]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, its renders in ``styles``) per identity, in name order: what a perfect personalization would
    draw, the ceiling the results pages score. Nuisance seeds 1000·(k+1) onwards for the k-th identity keep
    them apart from the reference's own."""
    for index, (name, level) in enumerate(sorted(levels.items())):
        seeds = np.arange(len(styles)) + 1000 * (index + 1)
        yield name, render(np.stack([level] * len(styles)), list(styles), seeds)


@dataclasses.dataclass
class Batch:
    """A captioned batch; ``levels`` is the (N, num_factors) identity array."""

    images: np.ndarray  # uint8 (N, size, size, 3)
    levels: np.ndarray
    styles: list[str]
    seeds: np.ndarray
    prompts: list[str]

    @property
    def identities(self) -> list[Identity]:
        return [Identity.from_vector(v) for v in self.levels]


def sample_dataset(
    n: int,
    seed: int,
    size: int = 32,
    styles: Sequence[str] = STYLES,
    subject: str = TRAINING_SUBJECT,
) -> Batch:
    """``n`` random identities, each in a random style from ``styles``.

    Captions use ``subject`` (``"face"`` for base training, so no "[V]").
    """
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, CARDINALITIES, size=(n, len(CARDINALITIES)))
    chosen = [styles[i] for i in rng.integers(0, len(styles), size=n)]
    seeds = rng.integers(0, 2**62, size=n, dtype=np.int64)
    images = render(levels, chosen, seeds, size) if n else np.zeros((0, size, size, 3), np.uint8)
    prompts = [prompt_for(s, subject) for s in chosen]
    return Batch(images=images, levels=levels, styles=chosen, seeds=seeds, prompts=prompts)


def iter_dataset(
    batch_size: int, seed: int, size: int = 32, styles: Sequence[str] = STYLES
) -> Iterator[Batch]:
    """Endless stream of independent batches, reproducible from ``seed``."""
    for step in range(2**62):
        yield sample_dataset(batch_size, seed * 1_000_003 + step, size, styles)
