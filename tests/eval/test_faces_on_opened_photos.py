"""crop_face, detect_faces and face_descriptor on a photo as ``Image.open`` gives it (docs/eval.md's example) see what
the CLI's loader sees: upright by EXIF orientation, and 16-bit pictures rescaled to 8 bits instead of clipped white."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lowdim_sd.images import open_rgb

faces = pytest.importorskip("lowdim_sd.faces")
if not faces.faces_available():
    pytest.skip("the faces extra is not installed: pip install 'lowdim[faces]'", allow_module_level=True)

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def phone_photo(face_photos, tmp_path_factory):
    """A JPEG stored on its side with EXIF orientation 6 (turn 90 degrees clockwise to show), as phones write."""
    path = tmp_path_factory.mktemp("phone") / "phone.jpg"
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    face_photos["obama2.jpg"].rotate(90, expand=True).save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.fixture(scope="module")
def sixteen_bit(face_photos, tmp_path_factory):
    """A 16-bit grayscale PNG (mode I;16), as scanners and raw converters write."""
    path = tmp_path_factory.mktemp("scan") / "scan.png"
    gray = np.asarray(face_photos["obama2.jpg"].convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode.startswith("I")
    return path


@pytest.mark.parametrize("photo", ["phone_photo", "sixteen_bit"])
def test_a_photo_as_image_open_gives_it_crops_as_the_cli_crops_it(photo, request):
    path = request.getfixturevalue(photo)
    with Image.open(path) as opened:
        crop = faces.crop_face(opened, size=128, name=path.name)
    assert np.abs(np.asarray(crop, float) - np.asarray(faces.crop_face(open_rgb(path), size=128), float)).mean() < 2


@pytest.mark.parametrize("photo", ["phone_photo", "sixteen_bit"])
def test_a_photo_as_image_open_gives_it_has_its_face_found_and_described(photo, request):
    path = request.getfixturevalue(photo)
    with Image.open(path) as opened:
        found = faces.detect_faces(opened, path.name)
        described = faces.face_descriptor(opened, path.name)
    as_loaded = open_rgb(path)
    assert found == faces.detect_faces(as_loaded, path.name) and len(found) == 1  # boxes on the upright picture
    assert described is not None
    assert float(np.dot(described, faces.face_descriptor(as_loaded))) > 0.99 * float(np.dot(described, described))


def test_the_picture_given_is_left_as_it_was(phone_photo):
    with Image.open(phone_photo) as opened:
        before = (opened.size, opened.mode, opened.getexif().get(ORIENTATION))
        faces.crop_face(opened, size=64)
        assert (opened.size, opened.mode, opened.getexif().get(ORIENTATION)) == before
