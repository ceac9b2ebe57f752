"""Review FL (F7): Face Rec's descriptor is the largest face's, as its docstring and crop_face's choice say: a picture
with a second, smaller face beside it describes the large face exactly as the picture without the small one does."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

faces = pytest.importorskip("lowdim_sd.faces")


def test_the_descriptor_is_the_largest_faces(astronaut):
    alone = Image.new("RGB", (1000, 520), (90, 120, 90))
    alone.paste(astronaut, (0, 0))
    both = alone.copy()
    both.paste(astronaut.resize((300, 300)), (650, 100))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", faces.SeveralFacesWarning)
        assert len(faces.detect_faces(both)) == 2
        got = faces.face_descriptor(both, "both")
    expected = faces.face_descriptor(alone, "alone")
    assert got is not None and expected is not None
    assert np.abs(got - expected).max() < 1e-3
