"""``lowdim encoder-features`` takes the crop settings precompute takes (--crop/--no-crop, --crop-margin,
--face-index) and --device, so its file can match any weight folder and train-hypernet's advice works as printed.

The face detector is replaced by a stand-in crop whose pixels depend on the margin and face index: what is tested
is that the settings reach it the way the weight folder's images are read, not face detection itself."""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
import torch
from PIL import Image

import lowdim.hyper.encoder as encoder_module
import lowdim_sd.faces as faces
from lowdim.errors import LowdimError
from lowdim_cli.main import main
from lowdim_sd.hypertrain import HyperTrainJob
from lowdim_sd.hypertrain_checks import check_features_cover
from lowdim_sd.weight_dataset import WeightDataset

TINY_VIT = {"image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("flagdata"), "w", 2, seed=5)


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    from transformers import ViTConfig, ViTModel

    folder = tmp_path_factory.mktemp("vit") / "vit"
    ViTModel(ViTConfig(**TINY_VIT)).save_pretrained(folder)
    return folder


@pytest.fixture
def stand_in_crop(monkeypatch):
    """A 'face crop' that keeps less of the picture the smaller the margin, shifted by the face index."""
    def crop(image, size=512, margin=faces.DEFAULT_MARGIN, index=None, name="", **hints):
        side = min(image.size)
        keep = max(4, round(side * min(1.0, 0.3 + margin)))
        shift = min(side - keep, index or 0)
        return image.crop((shift, shift, shift + keep, shift + keep)).resize((size, size), Image.BILINEAR)

    monkeypatch.setattr(faces, "crop_face", crop)


def cropped_copy(weights, tmp_path, margin: float, face_index: int | None):
    """The weight folder as precompute --crop --crop-margin MARGIN [--face-index N] records it."""
    folder = tmp_path / "cropped"
    shutil.copytree(weights, folder)
    index = json.loads((folder / "index.json").read_text())
    index["config"].update(crop=True, crop_margin=margin, face_index=face_index)
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def features(weights, encoder_folder, out, *flags) -> int:
    return main(["encoder-features", "-i", str(weights.parent / "faces-w"), "--resolution", "16", "--encoder",
                 str(encoder_folder), "--pool", "2", "-o", str(out), *flags])


def check(folder, path) -> None:
    check_features_cover(HyperTrainJob(weights=folder, out=folder.parent / "h", features=path),
                         WeightDataset(folder), None)


@pytest.mark.parametrize("margin, face_index", [(0.3, None), (0.3, 1), (0.6, 2), (0.123456789, 0)])
def test_features_made_with_the_precompute_crop_are_accepted_and_the_advice_reproduces_them(
        weights, encoder_folder, stand_in_crop, tmp_path, capsys, margin, face_index):
    folder = cropped_copy(weights, tmp_path, margin, face_index)
    plain = tmp_path / "plain.safetensors"
    assert features(weights, encoder_folder, plain, "--crop") == 0  # the default margin, the largest face
    with pytest.raises(LowdimError, match="no features for") as refused:
        check(folder, plain)
    advice = str(refused.value).split("were read: lowdim ", 1)[1]
    assert ("--crop-margin" in advice) == (margin != faces.DEFAULT_MARGIN)
    if margin != faces.DEFAULT_MARGIN:
        assert f"--crop-margin {margin}" in advice
    assert ("--face-index" in advice) == (face_index is not None)
    if face_index is not None:
        assert f"--face-index {face_index}" in advice
    made = tmp_path / "made.safetensors"
    args = shlex.split(advice)
    assert args[0] == "encoder-features"
    assert main([*args, "--encoder", str(encoder_folder), "--pool", "2", "-o", str(made)]) == 0, \
        capsys.readouterr().err
    check(folder, made)  # the command the error printed makes a file the run accepts


def test_the_default_crop_is_advised_without_margin_or_index(weights, encoder_folder, stand_in_crop, tmp_path):
    folder = cropped_copy(weights, tmp_path, faces.DEFAULT_MARGIN, None)
    path = tmp_path / "plain.safetensors"
    assert features(weights, encoder_folder, path) == 0  # uncropped: not what the weights saw
    with pytest.raises(LowdimError, match="no features for") as refused:
        check(folder, path)
    advice = str(refused.value).split("were read: ", 1)[1]
    assert advice.endswith("--resolution 16 --crop")
    assert features(weights, encoder_folder, path, "--crop", "--overwrite") == 0
    check(folder, path)


@pytest.mark.parametrize("flags, words", [
    (["--crop-margin", "0.3"], "--crop-margin shapes the face crop, which is off: add --crop"),
    (["--face-index", "1"], "--face-index shapes the face crop, which is off: add --crop"),
    (["--crop", "--crop-margin", "-1"], "--crop-margin must be 0 or more (room around the face, a fraction of its "
                                        "width), got -1.0"),
    (["--crop", "--crop-margin", "4"], "--crop-margin must be a finite number from 0 to 3"),  # before the encoder
    (["--crop", "--face-index", "-1"], "--face-index must be 0 or more, got -1"),
])
def test_crop_settings_that_would_do_nothing_or_cannot_crop_are_one_line(weights, encoder_folder, tmp_path, capsys,
                                                                         monkeypatch, flags, words):
    monkeypatch.setattr(encoder_module.ImageEncoder, "__init__", lambda *a, **k: pytest.fail("the encoder loaded"))
    assert features(weights, encoder_folder, tmp_path / "f.safetensors", *flags) == 1
    assert words in " ".join(capsys.readouterr().err.split())


def test_the_no_face_advice_names_a_flag_encoder_features_takes(weights, encoder_folder, tmp_path, capsys):
    advised = re.findall(r"--[\w-]+", faces.NO_FACE_HINT)
    assert advised == ["--no-crop"]
    assert features(weights, encoder_folder, tmp_path / "f.safetensors", *advised) == 0, capsys.readouterr().err
    assert (tmp_path / "f.safetensors").is_file()


def test_an_absent_device_is_one_line_before_anything_loads(weights, encoder_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(encoder_module.ImageEncoder, "__init__", lambda *a, **k: pytest.fail("the encoder loaded"))
    assert features(weights, encoder_folder, tmp_path / "f.safetensors", "--device", "cuda") == 1
    err = capsys.readouterr().err
    assert "device 'cuda' was requested but CUDA is not available" in " ".join(err.split())
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2  # one line (wrapped at most once)
    assert not (tmp_path / "f.safetensors").exists()


def test_device_cpu_writes_the_same_features_as_auto_on_this_machine(weights, encoder_folder, tmp_path):
    assert features(weights, encoder_folder, tmp_path / "a.safetensors", "--device", "cpu") == 0
    assert (tmp_path / "a.safetensors").is_file()
