"""Face cropping in ``lowdim personalize`` and ``lowdim precompute``: --crop/--no-crop, auto mode, resume."""

from __future__ import annotations

import json
import re

import pytest
import torch
from PIL import Image

import lowdim
import lowdim_sd.face_inputs as face_inputs
import lowdim_sd.faces as faces
import lowdim_sd.personalize as personalize_module
from lowdim_cli.main import main
from lowdim_sd.face_inputs import backend_crops, load_face_image, resolve_crop
from lowdim_sd.face_models import FacesUnavailable
from lowdim_sd.faces import FaceNotFound, FaceWarning
from lowdim_sd.images import load_image
from lowdim_sd.personalize import PersonalizeJob, personalize
from lowdim_sd.precompute import INDEX, PrecomputeJob, precompute, read_index
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_dataset import WeightDataset

needs_faces = pytest.mark.skipif(not faces.faces_available(), reason="the faces extra (dlib-bin) is not installed")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def astronaut_file(tmp_path_factory):
    """scikit-image's astronaut (the photo tests/eval uses): one real face, 512x512."""
    data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture
def flat_file(tmp_path):
    path = tmp_path / "wall.png"
    Image.new("RGB", (96, 96), (120, 140, 160)).save(path)
    return path


@pytest.fixture
def no_detector(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the face detector was called")

    monkeypatch.setattr(faces, "detect_faces", refuse)
    monkeypatch.setattr(faces, "crop_face", refuse)


def personalize_job(tiny_sd, image, out, **kwargs) -> PersonalizeJob:
    return PersonalizeJob(model=str(tiny_sd), image=image, out=out, steps=1, preview=False, **kwargs)


# -------------------------------------------------------------------------------------------- auto mode


def test_auto_mode_follows_the_backend():
    assert backend_crops("tinyfaces") is False  # 32x32 cartoons: a detector finds nothing in them
    assert backend_crops("sd15") is True and backend_crops("sd1.5") is True
    assert backend_crops("/models/my-finetune") is True and backend_crops("someone/some-sd15") is True
    assert resolve_crop(None, "tinyfaces") is False
    assert resolve_crop(False, "sd15") is False


def test_auto_mode_without_the_extra_warns_once_and_uses_the_image(monkeypatch, astronaut_file, no_detector):
    monkeypatch.setattr(face_inputs, "faces_available", lambda: False)
    with pytest.warns(FaceWarning, match=r"install lowdim\[faces\] to crop faces; using the image as it is"):
        tensor = load_face_image(astronaut_file, 32, model_name="sd15")
    assert torch.equal(tensor, load_image(astronaut_file, 32))
    with pytest.raises(FacesUnavailable, match="pip install 'lowdim\\[faces\\]'") as caught:
        resolve_crop(True, "tinyfaces")  # explicit --crop: an error, whatever the backend says
    assert "\n" not in str(caught.value)


def test_auto_mode_without_the_extra_personalizes_uncropped(tiny_sd, tmp_path, astronaut_file, monkeypatch,
                                                            no_detector):
    monkeypatch.setattr(face_inputs, "faces_available", lambda: False)
    with pytest.warns(FaceWarning, match="install lowdim"):
        result = personalize(personalize_job(tiny_sd, astronaut_file, tmp_path / "a"), progress=False)
    assert result.adapter.is_file()


# ------------------------------------------------------------------------------------------- --no-crop


def test_no_crop_never_calls_the_detector(tiny_sd, tmp_path, flat_file, no_detector):
    assert torch.equal(load_face_image(flat_file, 16, crop=False), load_image(flat_file, 16))
    result = personalize(personalize_job(tiny_sd, flat_file, tmp_path / "a", crop=False), progress=False)
    assert result.adapter.is_file()


# ------------------------------------------------------------------------------------------- cropping


@needs_faces
def test_explicit_crop_of_a_real_photo_has_the_model_resolution(astronaut_file):
    tensor = load_face_image(astronaut_file, 64, crop=True, margin=0.6)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
    assert float(tensor.min()) >= -1.0 and float(tensor.max()) <= 1.0
    assert not torch.equal(tensor, load_image(astronaut_file, 64))  # the face, not the center square
    tight = load_face_image(astronaut_file, 64, crop=True, margin=0.25)
    assert not torch.equal(tight, tensor)


@needs_faces
def test_personalize_feeds_the_cropped_face_to_the_hypernetwork_and_training(tiny_sd, tmp_path, astronaut_file,
                                                                            monkeypatch):
    seen = []
    monkeypatch.setattr(personalize_module, "predict_initial",
                        lambda model, job, reference: seen.append(reference.clone()))
    personalize(personalize_job(tiny_sd, astronaut_file, tmp_path / "a"), progress=False)  # auto: a path crops
    assert torch.equal(seen[0], load_face_image(astronaut_file, 16, crop=True))


@needs_faces
def test_no_face_is_a_one_line_error_naming_the_file(tiny_sd, tmp_path, flat_file, capsys):
    with pytest.raises(FaceNotFound, match="no face found in .*wall.png.*crop=False") as caught:
        load_face_image(flat_file, 16, crop=True)
    assert "\n" not in str(caught.value)
    with pytest.raises(FaceNotFound, match="wall.png"):  # auto mode on a model path crops too
        personalize(personalize_job(tiny_sd, flat_file, tmp_path / "a"), progress=False)
    code = main(["personalize", "-m", str(tiny_sd), "-i", str(flat_file), "-o", str(tmp_path / "b"), "--steps", "1",
                 "--no-preview", "--crop"])
    err = capsys.readouterr().err
    assert code == 1 and "wall.png" in err and "--no-crop" in err


# ----------------------------------------------------------------------------------------- precompute


@pytest.fixture
def flat_people(tmp_path):
    folder = tmp_path / "people"
    folder.mkdir()
    for number in range(2):
        Image.new("RGB", (16, 16), (40 * number, 90, 200)).save(folder / f"p{number}.png")
    return folder


def precompute_job(tiny_sd, people, out, **kwargs) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out, config=TrainConfig(steps=1),
                         **{"batch_subjects": 2, **kwargs})


def test_precompute_records_the_crop_and_refuses_to_resume_with_other_settings(tiny_sd, flat_people, tmp_path,
                                                                              model, monkeypatch, no_detector):
    out = tmp_path / "w"
    precompute(precompute_job(tiny_sd, flat_people, out, crop=False), progress=False, model=model)
    config = read_index(out)["config"]
    assert (config["crop"], config["crop_margin"], config["face_index"]) == (False, None, None)
    monkeypatch.setattr(face_inputs, "faces_available", lambda: True)
    with pytest.raises(lowdim.LowdimError, match=r"other settings: PrecomputeJob\(crop=\.\.\.\) \(off there, "
                                                 r"on now\);") as caught:  # from Python: the field
        precompute(precompute_job(tiny_sd, flat_people, out, crop=True), progress=False, model=model)
    assert "\n" not in str(caught.value)
    # A margin where nothing is cropped would change nothing: it is refused, as in personalize.
    with pytest.raises(lowdim.LowdimError, match=r"PrecomputeJob\(crop_margin=...\) sets the room around the "
                                                 r"cropped face"):
        precompute(precompute_job(tiny_sd, flat_people, out, crop=False, crop_margin=0.3), progress=False,
                   model=model)
    # An index from before cropping existed was made uncropped: --no-crop resumes it.
    index = json.loads((out / INDEX).read_text())
    index["config"] = {k: v for k, v in index["config"].items() if k not in ("crop", "crop_margin", "face_index")}
    (out / INDEX).write_text(json.dumps(index))
    assert precompute(precompute_job(tiny_sd, flat_people, out, crop=False), progress=False, model=model).skipped


@needs_faces
def test_precompute_crops_every_image_and_the_dataset_reads_them_alike(tiny_sd, tmp_path, astronaut_file, model):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "astronaut.png").write_bytes(astronaut_file.read_bytes())
    out = tmp_path / "w"
    precompute(precompute_job(tiny_sd, folder, out, crop_margin=0.4), progress=False, model=model)
    config = read_index(out)["config"]
    assert (config["crop"], config["crop_margin"], config["face_index"]) == (True, 0.4, None)
    image, _ = WeightDataset(out)[0]
    assert torch.equal(image, load_face_image(folder / "astronaut.png", 16, crop=True, margin=0.4))


def test_cli_passes_the_crop_options(tmp_path, monkeypatch, capsys):
    import lowdim_sd.personalize
    import lowdim_sd.precompute

    jobs = []

    def record(job):
        jobs.append(job)
        raise lowdim.LowdimError("recorded")  # stop before any model loads

    monkeypatch.setattr(lowdim_sd.precompute, "precompute", record)
    monkeypatch.setattr(lowdim_sd.personalize, "personalize", record)
    main(["precompute", "-m", "sd15", "-i", str(tmp_path), "--no-crop", "--crop-margin", "0.3", "--face-index", "1"])
    main(["personalize", "-m", "sd15", "-i", str(tmp_path / "me.jpg"), "--crop"])
    main(["personalize", "-m", "sd15", "-i", str(tmp_path / "me.jpg")])
    assert capsys.readouterr().err.count("recorded") == 3
    assert [(j.crop, j.crop_margin, j.face_index) for j in jobs] == [(False, 0.3, 1), (True, 0.6, None),
                                                                      (None, 0.6, None)]


@pytest.mark.parametrize(("options", "said"), [
    ({"crop_margin": -1.0}, r"PrecomputeJob\(crop_margin=\.\.\.\) must be 0 or more"),
    ({"crop_margin": float("nan")}, r"PrecomputeJob\(crop_margin=\.\.\.\) must be 0 or more"),
    ({"crop_margin": 4.0}, r"PrecomputeJob\(crop_margin=\.\.\.\) must be a finite number from 0 to 3"),
    ({"face_index": -1}, r"PrecomputeJob\(face_index=\.\.\.\) must be 0 or more"),
])
def test_crop_settings_no_run_can_use_are_refused_even_without_crop(tiny_sd, flat_people, tmp_path, options, said):
    with pytest.raises(lowdim.LowdimError, match=said):
        precompute(precompute_job(tiny_sd, flat_people, tmp_path / "w", **options), progress=False)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(("options", "said"), [
    ({"crop": False, "face_index": 1}, "PrecomputeJob(face_index=...) picks the face to crop, and "
                                       "PrecomputeJob(crop=False) turns cropping off"),
    ({"crop": False, "crop_margin": 0.3}, "PrecomputeJob(crop_margin=...) sets the room around the cropped face, and "
                                          "PrecomputeJob(crop=False)"),
])
def test_crop_settings_where_nothing_is_cropped_are_refused_as_personalize_refuses_them(tiny_sd, flat_people,
                                                                                       tmp_path, options, said):
    with pytest.raises(lowdim.LowdimError, match=re.escape(said)):
        precompute(precompute_job(tiny_sd, flat_people, tmp_path / "w", **options), progress=False)
    assert not (tmp_path / "w").exists()
