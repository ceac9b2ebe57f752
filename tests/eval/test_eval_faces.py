"""Face detection, cropping and the offline Face Rec embedder on real photos (see conftest for their source)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from PIL import Image

from lowdim.errors import LowdimError
from lowdim.metrics import Metric, Sample

faces = pytest.importorskip("lowdim_sd.faces")
if not faces.faces_available():
    pytest.skip("the faces extra is not installed: pip install 'lowdim[faces]'", allow_module_level=True)

from lowdim_sd.eval.paper_metrics import FaceRecMetric  # noqa: E402


@pytest.fixture(scope="module")
def photos(face_photos, astronaut) -> dict[str, Image.Image]:
    return {**face_photos, "astronaut.png": astronaut}


@pytest.fixture(scope="module")
def face_rec() -> FaceRecMetric:
    return FaceRecMetric()


def _side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


def test_a_face_is_found_and_cropped_on_every_photo(photos):
    for name, photo in photos.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error", faces.SeveralFacesWarning)  # each photo shows one person
            crop = faces.crop_face(photo, size=128, name=name)
        assert crop.size == (128, 128) and crop.mode == "RGB", name
        assert np.asarray(crop).std() > 20, f"{name}: the crop is flat, not a face"
        # The crop is itself a centred face, found again at about the size the margin implies.
        again = faces.detect_faces(crop.resize((256, 256)), name)
        assert again, f"{name}: no face in its own crop"
        centre_x = (again[0].left + again[0].right) / 2
        assert 256 * 0.3 < centre_x < 256 * 0.7, f"{name}: face not centred in the crop"


def test_same_person_scores_closer_than_different_people(photos, photo_people, face_rec):
    obama = [n for n, who in photo_people.items() if who == "obama"]
    same = [Sample(photos[a], (photos[b],), "a photo", name=a) for a, b in itertools.combinations(obama, 2)]
    different = [Sample(photos["biden.jpg"], (photos[a],), "a photo", name=a) for a in obama]
    different.append(Sample(photos["astronaut.png"], (photos["obama.jpg"],), "a photo", name="astronaut"))
    same_scores, different_scores = face_rec.score(same), face_rec.score(different)
    assert None not in same_scores and None not in different_scores
    assert min(same_scores) > max(different_scores)
    assert isinstance(face_rec, Metric) and face_rec.column == "Face Rec"


def test_face_rec_averages_over_references_and_counts_a_faceless_image_as_a_miss(photos, face_rec, noise):
    obama, obama2, biden = photos["obama.jpg"], photos["obama2.jpg"], photos["biden.jpg"]
    one, other, both = face_rec.score([Sample(obama, (obama2,), ""), Sample(obama, (biden,), ""),
                                       Sample(obama, (obama2, biden), "")])
    assert both == pytest.approx((one + other) / 2, abs=1e-9)
    with pytest.warns(faces.NoFaceWarning, match="no face found in noise.png"):
        assert face_rec.score([Sample(noise(0, 200), (obama,), "", name="noise.png")]) == [None]
    with pytest.warns(faces.NoFaceWarning, match="left out of Face Rec"):
        assert face_rec.score([Sample(obama, (noise(1, 200),), "")]) == [None]


def test_several_faces_take_the_largest_with_a_warning_or_the_one_asked_for(photos):
    big, small = photos["biden.jpg"], photos["obama.jpg"].resize((320, 400))
    group = _side_by_side(big, small)
    found = faces.detect_faces(group)
    assert len(found) == 2 and found[0].area > found[1].area
    with pytest.warns(faces.SeveralFacesWarning, match=r"2 faces.*pick another by its index"):
        largest = faces.crop_face(group, size=96, name="group.jpg")
    chosen = faces.crop_face(group, size=96, index=1)
    with pytest.raises(faces.FaceNotFound, match="face index 2 .* has 2 face"):
        faces.crop_face(group, size=96, index=2)
    # The chosen crops are the two people: each matches its own single-person crop best.
    alone = {"biden": faces.crop_face(big, size=96), "obama": faces.crop_face(small, size=96)}
    distance = lambda a, b: float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())  # noqa: E731
    assert distance(largest, alone["biden"]) < distance(largest, alone["obama"])
    assert distance(chosen, alone["obama"]) < distance(chosen, alone["biden"])


def test_no_face_tiny_and_huge_images(photos, noise):
    with pytest.raises(faces.FaceNotFound, match="no face found in blank.png; use a photo where the face is "
                                                  "clearly visible$"):  # crop_face has no crop= to suggest
        faces.crop_face(Image.new("RGB", (300, 300), "grey"), name="blank.png")
    with pytest.raises(faces.FaceNotFound, match="tiny.png is 10x12 pixels, too small"):
        faces.crop_face(noise(0, 10).resize((10, 12)), name="tiny.png")
    huge = photos["obama.jpg"].resize((4000, 5000))
    assert faces.crop_face(huge, size=64).size == (64, 64)
    with pytest.warns(faces.SmallFaceWarning, match="only .* px wide"):
        faces.crop_face(photos["obama.jpg"].resize((200, 250)), size=512)


def test_crop_arguments_are_checked(photos):
    with pytest.raises(LowdimError, match="margin"):
        faces.crop_face(photos["obama.jpg"], margin=-0.1)
    with pytest.raises(LowdimError, match="crop size"):
        faces.crop_face(photos["obama.jpg"], size=4)


def test_margin_widens_the_crop(photos):
    tight = faces.crop_face(photos["obama.jpg"], size=256, margin=0.2)
    loose = faces.crop_face(photos["obama.jpg"], size=256, margin=1.0)
    width = lambda crop: faces.detect_faces(crop)[0].width  # noqa: E731
    assert width(tight) > 1.5 * width(loose)


def test_missing_extra_is_a_clear_error(monkeypatch):
    from lowdim_sd import face_models

    monkeypatch.setattr(face_models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(face_models.FacesUnavailable, match=r"pip install 'lowdim\[faces\]'"):
        face_models.models_dir()


@pytest.mark.filterwarnings("ignore::lowdim_sd.eval.folder.EvalWarning")
def test_eval_face_rec_on_a_folder_reports_misses_and_crops_references(tmp_path, photos, noise):
    import json

    from lowdim_sd.eval.job import EvalJob, run_eval

    photos["obama3.jpg"].save(tmp_path / "generated.jpg")
    noise(0, 200).save(tmp_path / "faceless.png")
    photos["obama2.jpg"].save(tmp_path / "me.jpg")
    (tmp_path / "prompts.json").write_text(json.dumps({"references": ["me.jpg"], "images": [
        {"image": "generated.jpg", "prompt": "a photo of sks"}, {"image": "faceless.png", "prompt": "a sks face"}]}))
    report = run_eval(EvalJob(folder=tmp_path, metrics=("face-rec",), crop=True, crop_size=160))
    (result,) = report.results
    assert result.scores[0] > 0.9 and result.scores[1] is None
    assert (result.summary.scored, result.summary.misses) == (1, 1)
    assert any("no face found in faceless.png" in note for note in report.notes)
    assert "| misses | 1 |" in report.to_markdown()
