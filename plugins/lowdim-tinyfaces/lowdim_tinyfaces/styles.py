"""Text-described styles: prompt templates, backgrounds and post-effects.

Each style changes the picture in a way a small model can see at 32x32
(palette, background, an added object), so prompt following can be scored by
simple pixel statistics later on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .nuisance import hash_uniform
from .prompts import STYLE_INDEX, STYLE_TEMPLATES, STYLES, TRAINING_SUBJECT, prompt_for

__all__ = ["STYLES", "STYLE_INDEX", "STYLE_TEMPLATES", "TRAINING_SUBJECT", "background", "post_effect", "prompt_for",
           "style_ids"]

_BACKGROUND = torch.tensor(
    [
        [0.80, 0.85, 0.90],  # photo: pale studio grey-blue
        [0.80, 0.85, 0.90],  # sketch: same scene before the effect
        [1.00, 0.86, 0.10],  # popart: yellow
        [0.10, 0.14, 0.32],  # night: navy sky
        [0.86, 0.08, 0.08],  # red background
        [0.80, 0.85, 0.90],  # hat
    ]
)
_HALFTONE_INK = torch.tensor([0.95, 0.25, 0.60])
_NUM_STARS = 6


def style_ids(styles: str | int | list[str | int] | tuple[str | int, ...], n: int) -> Tensor:
    """Style names or ids (or one for all ``n`` images) as a long tensor (N,)."""
    items = [styles] * n if isinstance(styles, (str, int)) else list(styles)
    if len(items) != n:
        raise ValueError(f"got {len(items)} styles for {n} images")
    ids = [STYLE_INDEX[s] if isinstance(s, str) else int(s) for s in items]
    if any(not 0 <= i < len(STYLES) for i in ids):
        raise ValueError(f"style id out of range [0, {len(STYLES)})")
    return torch.tensor(ids, dtype=torch.long)


def background(sid: Tensor, gx: Tensor, gy: Tensor, seeds: np.ndarray, pixel: float) -> Tensor:
    """Per-style background (N, H, W, 3); gx, gy are canvas grids (1, H, W)."""
    base = _BACKGROUND[sid].view(-1, 1, 1, 3)
    # A gentle vertical gradient keeps plain backgrounds from looking flat.
    img = base * (1.04 - 0.08 * gy).unsqueeze(-1)
    night = sid == STYLE_INDEX["night"]
    if night.any():
        img[night] = _add_stars(img[night], gx, gy, seeds[night.numpy()], pixel)
    return img


def _add_stars(img: Tensor, gx: Tensor, gy: Tensor, seeds: np.ndarray, pixel: float) -> Tensor:
    sx = torch.from_numpy(np.stack([hash_uniform(seeds, 100 + k) for k in range(_NUM_STARS)], 1))
    sy = torch.from_numpy(np.stack([hash_uniform(seeds, 200 + k) for k in range(_NUM_STARS)], 1))
    # Stars sit in the upper part of the sky, away from the centre column.
    cx = (sx.float() * 1.8 - 0.9).view(-1, _NUM_STARS, 1, 1)
    cy = (sy.float() * 0.8 - 0.95).view(-1, _NUM_STARS, 1, 1)
    d = torch.hypot(gx.unsqueeze(1) - cx, gy.unsqueeze(1) - cy).amin(1)
    glow = (1.0 - d / (1.2 * pixel)).clamp(0, 1)
    return torch.lerp(img, torch.ones_like(img) * 0.98, glow.unsqueeze(-1))


def post_effect(
    img: Tensor, figure: Tensor, sid: Tensor, gx: Tensor, gy: Tensor, size: int
) -> Tensor:
    """Whole-picture style effects applied after lighting, per style subset.

    ``figure`` (N, H, W) is the person's coverage; 0 means background.
    """
    out = img.clone()
    for name, fx in (("sketch", _sketch), ("popart", _popart), ("night", _night)):
        sel = sid == STYLE_INDEX[name]
        if sel.any():
            out[sel] = fx(img[sel], figure[sel], gx, gy, size)
    return out


def _luma(img: Tensor) -> Tensor:
    # Elementwise rather than a matmul: BLAS kernels may change with batch size,
    # which would make an image depend on the batch it was rendered in.
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def _edges(lum: Tensor) -> Tensor:
    """Gradient magnitude per pixel from central differences (replicate border)."""
    p = torch.nn.functional.pad(lum.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    gx = p[:, 1:-1, 2:] - p[:, 1:-1, :-2]
    gy = p[:, 2:, 1:-1] - p[:, :-2, 1:-1]
    return torch.hypot(gx, gy)


def _sketch(img: Tensor, figure: Tensor, gx: Tensor, gy: Tensor, size: int) -> Tensor:
    lum = _luma(img)
    ink = (_edges(lum) * 2.2 - 0.08).clamp(0, 1)
    # Diagonal hatching with a 3-pixel period, only in the darker regions.
    phase = (gx + gy) * (size / 2) * (2 * math.pi / 3)
    hatch = (torch.sin(phase) > 0.2).float() * ((0.62 - lum) * 3).clamp(0, 1)
    tone = 0.97 * (1 - 0.85 * ink) * (1 - 0.45 * hatch) * (0.75 + 0.25 * lum)
    return tone.unsqueeze(-1).expand(-1, -1, -1, 3).contiguous()


def _popart(img: Tensor, figure: Tensor, gx: Tensor, gy: Tensor, size: int) -> Tensor:
    grey = img.mean(-1, keepdim=True)
    vivid = (grey + (img - grey) * 2.0).clamp(0, 1)
    poster = torch.round(vivid * 2) / 2
    ink = (_edges(_luma(img)) * 3.0 - 0.2).clamp(0, 1).unsqueeze(-1)
    poster = poster * (1 - ink)
    # Halftone dots (4-pixel period at 32x32) on the background only; drawn
    # after edge detection so the dots get no outlines.
    f = 2 * math.pi / 0.25
    dots = ((torch.cos(gx * f) + torch.cos(gy * f) - 1.2) * 4).clamp(0, 1) * (1 - figure)
    return torch.lerp(poster, _HALFTONE_INK.expand_as(poster), dots.unsqueeze(-1))


_NIGHT_TINT = torch.tensor([0.36, 0.46, 0.85])


def _night(img: Tensor, figure: Tensor, gx: Tensor, gy: Tensor, size: int) -> Tensor:
    return img.pow(1.15) * _NIGHT_TINT + torch.tensor([0.02, 0.03, 0.07])
