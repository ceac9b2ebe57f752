"""PNG grids for eyeballing renders and model samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def render_grid(images: np.ndarray, ncol: int = 8, pad: int = 1, upscale: int = 1) -> np.ndarray:
    """Tile uint8 images (N, H, W, 3) into one uint8 picture, row-major."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3), got {images.shape}")
    if upscale > 1:
        # Nearest-neighbour keeps single pixels legible when viewing tiny renders.
        images = images.repeat(upscale, axis=1).repeat(upscale, axis=2)
    n, h, w, _ = images.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = images[i]
    return grid


def save_grid(
    path: str | Path, images: np.ndarray, ncol: int = 8, pad: int = 1, upscale: int = 1
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_grid(images, ncol, pad, upscale)).save(path)
    return path
