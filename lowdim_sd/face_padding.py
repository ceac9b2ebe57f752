"""The share of a face crop that lies past the photo's edge, which dlib fills with black: warned about, with the
largest margin that keeps the crop inside (``faces.crop_face`` calls it; kept apart so faces.py stays small)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from lowdim.option_words import either
from lowdim_sd import faces
from lowdim_sd.face_models import dlib_module


def warn_of_padding(shape: tuple[int, ...], landmarks: Any, size: int, margin: float, name: str) -> None:
    """A :class:`PaddedCropWarning` when more than ``faces.PADDING_WARNED`` of the ``size`` px crop at ``margin`` lies
    outside a photo of ``shape`` (rows, columns), with the largest margin that keeps it inside, or word that none
    does. Measured on the crop itself, since dlib blacks out a border a few source pixels wide there."""
    inside = np.full(shape[:2], 255, np.uint8)  # the chip of this is 0 where dlib pads the crop

    def padded(at: float) -> float:
        dlib = dlib_module()
        chip = dlib.extract_image_chip(inside, dlib.get_face_chip_details(landmarks, size=size, padding=at))
        return float((chip < 128).mean())

    share = padded(margin)
    if share <= faces.PADDING_WARNED:
        return
    if padded(0.0) > 0:
        advice = (f"the face touches the photo's edge, so even {either('--crop-margin 0', 'a margin of 0')} reaches "
                  f"past it; use a photo with room around the face")
    else:
        low, high = 0.0, margin  # the crop grows with the margin, so the last margin inside is found by halving
        for _ in range(12):
            low, high = ((low + high) / 2, high) if padded((low + high) / 2) == 0 else (low, (low + high) / 2)
        fits = f"{math.floor(low * 100) / 100:.2f}"
        advice = f"{either(f'--crop-margin {fits}', f'a margin of {fits}')} or less keeps it inside the photo"
    warnings.warn(faces.PaddedCropWarning(f"the crop of the face in {name} is {share:.0%} black padding, where it "
                                          f"reaches past the photo's edge; {advice}"), stacklevel=3)
