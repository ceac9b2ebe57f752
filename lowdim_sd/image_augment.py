"""Training's augmentation of reference pictures (``augment``): a random flip and crop per image, drawn from the
run's generator so a run repeats exactly. Kept apart from loading and saving (images.py) so that file stays small."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(images: torch.Tensor, generator: torch.Generator, flip: bool = True, max_crop: float = 0.1) -> torch.Tensor:
    """Per image: a random horizontal flip, then a random crop of scale (1 - u * max_crop), u ~ U(0, 1),
    at a random position, resized back to the full size (bilinear, antialiased).

    Deterministic: the same generator state gives identical output. Each call draws exactly 4 numbers
    per image from ``generator`` whatever ``flip`` and ``max_crop`` are, so the random stream (and any
    later draws) does not depend on those options. Same shape and dtype out as in; values stay within
    each image's own value range (so [-1, 1] in, [-1, 1] out), since resampling is clamped.
    """
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"augment expects a float (N, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
    if not 0.0 <= max_crop < 1.0:
        raise ValueError(f"max_crop must be in [0, 1), got {max_crop}")
    draws = torch.rand(images.shape[0], 4, generator=generator, dtype=torch.float64).tolist()
    if not draws:
        return images.clone()
    return torch.stack([_augment_one(image, draw, flip, max_crop) for image, draw in zip(images, draws, strict=True)])


def _augment_one(image: torch.Tensor, draw: list[float], flip: bool, max_crop: float) -> torch.Tensor:
    flip_draw, scale_draw, top_draw, left_draw = draw
    if flip and flip_draw < 0.5:
        image = image.flip(-1)
    height, width = image.shape[-2:]
    scale = 1.0 - scale_draw * max_crop
    crop_h, crop_w = max(1, round(scale * height)), max(1, round(scale * width))
    if (crop_h, crop_w) == (height, width):
        return image.clone()  # no resampling, so flip-only is an exact mirror
    top = min(int(top_draw * (height - crop_h + 1)), height - crop_h)
    left = min(int(left_draw * (width - crop_w + 1)), width - crop_w)
    crop = image[:, top:top + crop_h, left:left + crop_w].unsqueeze(0).to(torch.float32)
    resized = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False, antialias=True)[0]
    # Float rounding in the filter can step a hair outside the input's range; [-1, 1] must stay exact.
    return resized.clamp(image.min().item(), image.max().item()).to(image.dtype)
