"""Write test pictures into folders; a test helper, so the shipped package holds only what it uses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from lowdim_sd.images import PathLike, save_png, to_pil


def save_images(images: torch.Tensor | Sequence[Image.Image], folder: PathLike, prefix: str = "image") -> list[Path]:
    """Save a batch as ``folder/{prefix}_{index:03d}.png`` (atomically, one by one); returns the paths."""
    pictures = to_pil(images) if isinstance(images, torch.Tensor) else list(images)
    stem = f"{prefix}_" if prefix else ""
    return [save_png(picture, Path(folder) / f"{stem}{index:03d}.png") for index, picture in enumerate(pictures)]


def decodes_of(path: Path, monkeypatch) -> list[Path]:
    """Every PIL decode of ``path`` from here on, whichever reader asks for it (a list that grows)."""
    opened: list[Path] = []
    open_image = Image.open

    def counted(fp, *args, **kwargs):
        if isinstance(fp, (str, Path)) and Path(fp) == path:
            opened.append(Path(fp))
        return open_image(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counted)
    return opened
