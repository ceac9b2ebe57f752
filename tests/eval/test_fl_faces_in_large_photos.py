"""Review FL: a photo larger than the detector's copy (F4) or the crop's copy (F5) is read in its own pixel coordinates.
A face found in the shrunk copy is scaled back on every side, and the crop's landmarks are looked for where the face
is in the copy the crop reads; CROP_MAX_SIDE is lowered here so a 2048 px photo takes that path in a second."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

faces = pytest.importorskip("lowdim_sd.faces")


def test_a_face_found_in_the_shrunk_copy_is_given_in_the_photos_coordinates(astronaut):
    small = faces.detect_faces(astronaut, "small")[0]
    big = faces.detect_faces(astronaut.resize((2048, 2048), Image.Resampling.BILINEAR), "big")[0]  # copy: 1024
    for side in ("left", "top", "right", "bottom"):
        assert getattr(big, side) == pytest.approx(4 * getattr(small, side), rel=0.1, abs=12), (side, small, big)


def test_a_photo_larger_than_the_crops_copy_crops_the_same_face(astronaut, monkeypatch):
    expected = np.asarray(faces.crop_face(astronaut, 64, name="small"), np.float64)
    monkeypatch.setattr(faces, "CROP_MAX_SIDE", 1024)
    big = astronaut.resize((2048, 2048), Image.Resampling.BILINEAR)
    got = np.asarray(faces.crop_face(big, 64, name="big"), np.float64)
    assert np.abs(got - expected).mean() < 12, np.abs(got - expected).mean()  # the same face, framed the same
