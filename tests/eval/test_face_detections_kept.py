"""A photo's faces are found once: the ui's preview, its click's check and the run, and eval's metrics, each crop
the same picture, and dlib's detector costs up to a second a call on a CPU."""

from __future__ import annotations

import pytest

faces = pytest.importorskip("lowdim_sd.faces")
if not faces.faces_available():
    pytest.skip("the faces extra is not installed: pip install 'lowdim[faces]'", allow_module_level=True)


def test_the_same_pixels_are_detected_once_however_they_are_given(astronaut, detector_runs):
    first = faces.detect_faces(astronaut, "a.png")
    assert faces.detect_faces(astronaut.copy(), "b.png") == first  # another picture object, the same pixels
    faces.crop_face(astronaut, 64, name="a.png")  # personalize's crop after the preview's detection
    assert len(detector_runs) == 1 and first


def test_an_edited_photo_is_detected_anew_and_what_a_caller_does_to_a_list_stays_its_own(astronaut, detector_runs):
    found = faces.detect_faces(astronaut)
    found.clear()
    assert faces.detect_faces(astronaut), "a caller's change to its list reached the kept faces"
    edited = astronaut.copy()
    edited.putpixel((0, 0), (0, 0, 0) if edited.getpixel((0, 0)) != (0, 0, 0) else (255, 255, 255))
    faces.detect_faces(edited)
    assert len(detector_runs) == 2


def test_only_the_last_few_pictures_are_kept(astronaut, detector_runs, monkeypatch):
    monkeypatch.setattr(faces, "DETECTIONS_KEPT", 2)
    pictures = [astronaut.rotate(angle) for angle in (0, 1, 2)]
    for picture in pictures:
        faces.detect_faces(picture)
    faces.detect_faces(pictures[0])  # pushed out by the third
    faces.detect_faces(pictures[2])  # still kept
    assert len(detector_runs) == 4
