"""The face crop of a user's photo (review EP 1, 2, 3, 6, 8): a JPEG whose EXIF block cannot be parsed is cropped as
its pixels load; a crop reaching past the photo says how much of it is black and what margin fits; --crop-margin has
a finite upper bound; a small face in a large photo is looked for again, larger; no face (or too few for
--face-index) is told before the model loads; the several-faces warning names --face-index and where each face is."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from PIL import Image

from lowdim.errors import LowdimError
from lowdim.option_words import command_line
from lowdim_sd.images import open_rgb
from lowdim_sd.personalize import PersonalizeJob
from lowdim_sd.personalize_checks import check_job

faces = pytest.importorskip("lowdim_sd.faces")
if not faces.faces_available():
    pytest.skip("the faces extra is not installed: pip install 'lowdim[faces]'", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut (the photo the other face tests use): one real face about 90 px wide, 512x512."""
    return pytest.importorskip("skimage.data").astronaut()


def job(image, tmp_path, **fields) -> PersonalizeJob:
    """A job on the bundled model, which nothing here loads; crop=True, as it would be for an SD1.5 model."""
    return PersonalizeJob(model="tinyfaces", image=image, out=tmp_path / "out", steps=1, preview=False, **fields)


# ------------------------------------------------------------------------------------------------ EP 1: bad EXIF


def test_a_jpeg_whose_exif_cannot_be_parsed_is_cropped_as_its_pixels_load(astronaut, tmp_path):
    from lowdim_sd.face_inputs import load_face_image

    bad, plain = tmp_path / "badexif.jpg", tmp_path / "plain.jpg"
    Image.fromarray(astronaut).save(bad, exif=b"Exif\x00\x00" + b"garbage-not-tiff" * 3)
    Image.fromarray(astronaut).save(plain)  # the same pixels, no EXIF
    assert np.array_equal(np.asarray(open_rgb(bad)), np.asarray(open_rgb(plain)))
    cropped = load_face_image(bad, 64, crop=True)  # was a SyntaxError traceback ("not a TIFF file")
    assert cropped.equal(load_face_image(plain, 64, crop=True))


# ----------------------------------------------------------------------------------------- EP 2: black padding


def padding_warnings(picture: Image.Image, margin: float = faces.DEFAULT_MARGIN) -> tuple[Image.Image, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crop = faces.crop_face(picture, 64, margin=margin, name="selfie.jpg")
    return crop, [str(w.message) for w in caught if issubclass(w.category, faces.PaddedCropWarning)]


def test_a_crop_reaching_past_the_photo_says_how_much_is_black_and_the_margin_that_fits(astronaut):
    lifted = np.maximum(astronaut, 10)  # no black of its own: every black pixel of the crop is padding
    selfie = Image.fromarray(lifted).crop((140, 40, 300, 220)).resize((400, 450))  # the face fills the photo
    crop, said = padding_warnings(selfie)
    assert len(said) == 1 and "selfie.jpg" in said[0], said
    share = int(re.search(r"is (\d+)% black padding", said[0])[1]) / 100
    black = float((np.asarray(crop).sum(axis=2) == 0).mean())
    assert share > faces.PADDING_WARNED and abs(black - share) < 0.03, (share, black)  # the share said is the crop's
    fits = float(re.search(r"a margin of ([\d.]+) or less keeps it inside", said[0])[1])
    assert 0 < fits < faces.DEFAULT_MARGIN
    inside, none = padding_warnings(selfie, fits)
    assert not none and (np.asarray(inside).sum(axis=2) == 0).mean() == 0  # that margin does keep it inside
    assert not padding_warnings(Image.fromarray(astronaut))[1]  # room around the face: nothing to say


def test_a_face_at_the_edge_is_told_to_find_a_photo_with_room_around_it(astronaut):
    _, said = padding_warnings(Image.fromarray(astronaut[:, 215:]))  # the face cut by the left edge
    assert len(said) == 1 and "touches the photo's edge" in said[0] and "room around the face" in said[0], said


def test_the_crop_margin_has_a_finite_upper_bound(tmp_path, astronaut):
    face = tmp_path / "face.png"
    Image.fromarray(astronaut).save(face)
    check_job(job(face, tmp_path, crop=True, crop_margin=3.0))  # the bound itself is fine
    for margin in (float("inf"), 3.5, 50.0):
        with pytest.raises(LowdimError, match=r"crop_margin=\.\.\.\) must be a finite number from 0 to 3 "):
            check_job(job(face, tmp_path, crop=True, crop_margin=margin))
    for margin in (float("inf"), float("nan"), -0.1):  # crop_face itself takes any finite room, as a folder recorded
        with pytest.raises(LowdimError, match="face margin must be a finite number of 0 or more"):
            faces.crop_face(Image.fromarray(astronaut), 64, margin=margin)


def test_a_margin_an_older_lowdim_recorded_past_the_bound_still_crops(astronaut):
    """A weight folder recorded at --crop-margin 3.5 (valid before the bound) is extended and trained on at 3.5:
    the crop takes it, wider than at 3 (the face a smaller part of the same 64 px)."""
    photo = Image.fromarray(astronaut)
    wide, bound = faces.crop_face(photo, 64, margin=3.5), faces.crop_face(photo, 64, margin=3.0)
    assert wide.size == bound.size == (64, 64) and wide.tobytes() != bound.tobytes()


# ---------------------------------------------------------------------------------- EP 3: a small face, a big photo


def test_a_small_face_in_a_large_photo_is_found_by_a_second_larger_look(astronaut, detector_runs):
    photo = Image.new("RGB", (3000, 2000), (90, 120, 90))
    photo.paste(Image.fromarray(astronaut).resize((455, 455)), (1270, 770))  # a face ~85 px: 29 px in the copy
    found = faces.detect_faces(photo, "big.jpg")
    assert len(found) == 1 and 70 < found[0].width < 110 and len(detector_runs) == 2, (found, detector_runs)
    faces.crop_face(photo, 64, name="big.jpg")  # the retry's faces are kept too: no third look
    assert len(detector_runs) == 2


def test_no_face_in_a_large_photo_gives_its_size_and_says_to_crop_around_the_face():
    with pytest.raises(faces.FaceNotFound, match=r"no face found in wall.jpg \(a 1200x800 photo, where a face "
                                                 r"under about \d+ px wide may be missed: crop the photo around"):
        faces.crop_face(Image.new("RGB", (1200, 800), (90, 120, 90)), 64, name="wall.jpg")


# ------------------------------------------------------------------------------ EP 6: told before the model loads


def test_no_face_and_a_face_index_beyond_them_are_refused_by_the_check_before_the_load(tmp_path, astronaut,
                                                                                       detector_runs):
    from lowdim_sd.face_inputs import load_face_image
    from lowdim_sd.personalize_checks import check_face_found

    wall, face = tmp_path / "wall.png", tmp_path / "face.png"
    Image.new("RGB", (96, 96), (120, 140, 160)).save(wall)
    Image.fromarray(astronaut).save(face)
    with pytest.raises(faces.FaceNotFound, match=r"no face found in .*wall\.png.*crop=False"):
        check_face_found(job(wall, tmp_path, crop=True), True)
    with pytest.raises(faces.FaceNotFound, match=r"face index 5 asked for, but .*face\.png has 1 face"):
        check_face_found(job(face, tmp_path, crop=True, face_index=5), True)
    check_face_found(job(face, tmp_path, crop=True, face_index=0), True)
    runs = len(detector_runs)
    load_face_image(face, 32, crop=True, index=0)  # the run's crop: the check's detection, from the cache
    assert len(detector_runs) == runs == 2  # the wall, the face
    check_face_found(job(wall, tmp_path, crop=False), False)  # no crop: no face needed, none looked for
    assert len(detector_runs) == 2


def test_the_cli_refuses_a_photo_without_a_face_before_loading_the_model(tmp_path, capsys, monkeypatch):
    from lowdim_cli.main import main
    from lowdim_sd import personalize

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(personalize, "load_sd", no_load)
    wall = tmp_path / "wall.png"
    Image.new("RGB", (96, 96), (120, 140, 160)).save(wall)
    code = main(["personalize", "-m", "tinyfaces", "-i", str(wall), "--crop", "-o", str(tmp_path / "o"),
                 "--steps", "1", "--no-preview"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1 and "no face found in" in err and "--no-crop" in err and "model was loaded" not in err, err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------- EP 8a: which of several faces


def test_the_several_faces_warning_names_face_index_and_where_each_face_is():
    found = [faces.Face(100, 200, 190, 290, 1.0), faces.Face(400, 50, 489, 139, 0.9)]
    with command_line(), pytest.warns(faces.SeveralFacesWarning) as cli:
        faces.choose_face(found, None, "two.png", faces.job_hints()["several_faces_hint"])
    with pytest.warns(faces.SeveralFacesWarning) as python:
        faces.choose_face(found, None, "two.png", faces.job_hints()["several_faces_hint"])
    for caught in (cli, python):
        message = str(caught[0].message)
        assert "#0: 90 px at (145, 245)" in message and "#1: 89 px at (444, 94)" in message, message
    assert "--face-index N" in str(cli[0].message) and "face_index=N" in str(python[0].message)
