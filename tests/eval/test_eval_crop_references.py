"""``lowdim eval --crop``: references are cropped as personalize crops them (from the full-resolution photo), and the
notes about their faces advise only what eval can do (it has no --face-index, and it goes on uncropped itself)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from lowdim_sd.eval.folder import load_eval_set
from lowdim_sd.images import open_rgb

faces = pytest.importorskip("lowdim_sd.faces")
if not faces.faces_available():
    pytest.skip("the faces extra is not installed: pip install 'lowdim[faces]'", allow_module_level=True)


@pytest.fixture
def generated(tmp_path, noise):
    folder = tmp_path / "gen"
    folder.mkdir()
    noise(0).save(folder / "000.png")
    (folder / "prompts.json").write_text(json.dumps({"images": [{"image": "000.png", "prompt": "a sks face"}]}))
    return folder


def _notes(folder, references, **crop) -> tuple[list, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (sample,) = load_eval_set(folder, references=references, crop=True, **crop).samples
    return list(sample.references), [str(w.message) for w in caught]


def test_face_notes_of_eval_crop_advise_nothing_eval_lacks(generated, tmp_path, face_photos):
    refs = tmp_path / "refs"
    refs.mkdir()
    big, small = face_photos["biden.jpg"], face_photos["obama.jpg"].resize((320, 400))
    two = Image.new("RGB", (big.width + small.width, max(big.height, small.height)), "white")
    two.paste(big, (0, 0))
    two.paste(small, (big.width, 0))
    two.save(refs / "two.jpg")
    Image.new("RGB", (400, 300), (120, 160, 200)).save(refs / "noface.jpg")
    references, notes = _notes(generated, [refs], crop_size=96)
    several = [n for n in notes if "two.jpg has 2 faces" in n]
    faceless = [n for n in notes if "no face found in" in n and "noface.jpg" in n]
    assert len(several) == 1 and "using the largest" in several[0]
    assert "index" not in several[0] and "#N" not in several[0]  # eval has no --face-index
    assert len(faceless) == 1 and "uncropped" in faceless[0]
    assert "--no-crop" not in faceless[0]  # eval already goes on uncropped: nothing for the user to pass
    assert len(references) == 2


def test_eval_crops_a_huge_reference_from_its_full_resolution_as_personalize_does(generated, tmp_path, face_photos):
    photo = face_photos["obama2.jpg"]
    width = faces.detect_faces(photo)[0].width
    scale = 200 / width  # a 200 px face: enough for a 512 px crop, but not once the photo is shrunk to 2048 px
    canvas = Image.new("RGB", (4000, 3000), (90, 110, 90))
    canvas.paste(photo.resize((round(photo.width * scale), round(photo.height * scale))), (1500, 1000))
    path = tmp_path / "huge.png"
    canvas.save(path)
    (reference,), notes = _notes(generated, [path], crop_size=512)
    assert not [n for n in notes if "px wide" in n], notes  # the face is not small in the file
    as_personalize_crops = faces.crop_face(open_rgb(path), size=512, name=path.name)
    assert np.abs(np.asarray(reference, float) - np.asarray(as_personalize_crops, float)).mean() < 1
