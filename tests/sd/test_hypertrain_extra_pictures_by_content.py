"""--extra-images as a resumed train-hypernet compares them, and as it reads them.

A resume compares the pictures' bytes, as it compares a weight folder's (by digest): another face saved under the
same name, with the same byte count (an uncompressed picture of the same size, a re-encode that happens to match), is
another training set, and the refusal names the picture. Checkpoints that recorded names and sizes only still
resume, compared on what they recorded. A picture is digested once at the start however many readers check it, and
cropped once, kept in the weight folder's crop cache; an edited one is cropped anew (and refused)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from hypertrain_jobs import TINY_VIT, job  # tests/sd, on the path as pytest puts it
from PIL import Image
from resume_refusals import refusal  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim_sd.checked_pictures as checked_pictures
from lowdim_sd import faces
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.hypertrain_io import Images
from lowdim_sd.hypertrain_resume import extra_images_identity, resume_settings
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("hyperdata"), "w", 3, seed=4)


@pytest.fixture
def extra(tmp_path):
    """Two identities without weights, as BMP files: every 16x16 picture is the same number of bytes."""
    folder = tmp_path / "extra"
    folder.mkdir()
    generator = torch.Generator().manual_seed(5)
    for number in range(2):
        pixels = torch.randint(0, 256, (16, 16, 3), generator=generator, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"x_{number:03d}.bmp")
    return folder


def another_face_of_the_same_size(picture):
    """``picture`` saved over with the other extra picture's bytes: same name, same size, another face."""
    other = next(path for path in sorted(picture.parent.glob("*.bmp")) if path != picture)
    assert other.stat().st_size == picture.stat().st_size and other.read_bytes() != picture.read_bytes()
    shutil.copy(other, picture)


def command(weights, extra, out, steps: int, *more: str) -> list[str]:
    return ["train-hypernet", "-w", str(weights), "-o", str(out), "--encoder-config", json.dumps(TINY_VIT),
            "--width", "16", "--heads", "2", "--iterations", "1", "--batch-size", "2", "--val-identities", "0",
            "--checkpoint-every", "2", "--steps", str(steps), "--extra-images", str(extra), "--diffusion-iterates",
            "last", *more]


def test_a_resume_after_a_same_size_replacement_is_refused_naming_the_picture(weights, extra, tmp_path, capsys):
    from lowdim_cli.main import main

    out = tmp_path / "h"
    assert main(command(weights, extra, out, 2)) == 0
    capsys.readouterr()
    picture = extra / "x_000.bmp"
    another_face_of_the_same_size(picture)
    said = refusal(capsys, command(weights, extra, out, 4, "--resume"))
    assert said.startswith(f"Error: {out / 'checkpoints' / 'step-000002'}: "), said
    assert f"{picture} is not the picture" in said and "--extra-images" in said, said
    assert not (out / "checkpoints" / "step-000004").exists()  # refused before anything is written


def test_from_python_too(weights, extra, tmp_path):
    out = tmp_path / "p"
    options = {"val_identities": 0, "extra_images": [extra], "diffusion_iterates": "last"}
    train_hypernet(job(weights, out, steps=2, **options), progress=False)
    picture = extra / "x_001.bmp"
    another_face_of_the_same_size(picture)
    with pytest.raises(lowdim.LowdimError) as refused:
        train_hypernet(job(weights, out, steps=4, resume=True, **options), progress=False)
    line = str(refused.value)
    assert f"trained on other extra_images: {picture} is not the picture" in line, line
    assert "\n" not in line


def test_a_resume_with_the_same_pictures_goes_on_and_other_folders_are_one_short_line(weights, extra, tmp_path):
    out = tmp_path / "s"
    options = {"val_identities": 0, "diffusion_iterates": "last"}
    train_hypernet(job(weights, out, steps=2, extra_images=[extra], **options), progress=False)
    os.utime(extra / "x_000.bmp")  # touched, the same bytes: the same training set
    assert train_hypernet(job(weights, out, steps=3, resume=True, extra_images=[extra], **options),
                          progress=False).start_step == 2
    with pytest.raises(lowdim.LowdimError) as refused:
        train_hypernet(job(weights, out, steps=4, resume=True, **options), progress=False)
    line = str(refused.value)
    assert "other settings: HyperTrainJob(extra_images=...) (extra: 2 identities there, none now)" in line, line
    (extra / "x_002.bmp").write_bytes((extra / "x_000.bmp").read_bytes())
    with pytest.raises(lowdim.LowdimError, match=r"extra: 2 identities there, extra: 3 identities now"):
        train_hypernet(job(weights, out, steps=4, resume=True, extra_images=[extra], **options), progress=False)


def test_a_checkpoint_that_recorded_names_and_sizes_still_resumes_compared_on_those(weights, extra, tmp_path):
    out = tmp_path / "old"
    options = {"val_identities": 0, "extra_images": [extra], "diffusion_iterates": "last"}
    train_hypernet(job(weights, out, steps=2, **options), progress=False)
    state = out / "checkpoints" / "step-000002" / "state.json"
    recorded = json.loads(state.read_text())
    recorded["settings"]["extra_images"] = extra_images_identity([extra])  # as lowdim recorded them before
    state.write_text(json.dumps(recorded))
    another_face_of_the_same_size(extra / "x_000.bmp")  # what names and sizes cannot tell
    assert train_hypernet(job(weights, out, steps=3, resume=True, **options), progress=False).start_step == 2
    Image.new("RGB", (24, 24)).save(extra / "x_000.bmp")  # another size: what they can
    with pytest.raises(lowdim.LowdimError, match=r"HyperTrainJob\(extra_images=\.\.\.\) \(extra: 2 identities, "
                                                 r"files \w+ there, extra: 2 "
                                                 r"identities, files \w+ now\)"):
        train_hypernet(job(weights, out, steps=4, resume=True, **options), progress=False)


def test_the_start_digests_each_extra_picture_once(weights, extra, tmp_path, monkeypatch):
    """resume_settings, then train-hypernet's two readers of the pictures (--features' check, then training)."""
    digested = []
    real = checked_pictures.image_digest
    monkeypatch.setattr(checked_pictures, "image_digest", lambda path: digested.append(path) or real(path))
    full = WeightDataset(weights)
    resume_settings(job(weights, tmp_path / "h", extra_images=[extra]), full)
    train_set = full.subset(full.names)
    for _ in range(2):
        Images([extra], train_set)
    assert sorted(digested) == sorted(extra.glob("*.bmp"))


@pytest.fixture
def crops(monkeypatch) -> list[str]:
    """The names of the pictures cropped (the crop itself a resize: no face detector needed)."""
    cropped: list[str] = []

    def crop_face(image, size, margin, index, name, **hints):
        cropped.append(name)
        return image.resize((size, size))

    monkeypatch.setattr(faces, "crop_face", crop_face)
    return cropped


def cropping(weights, **options) -> WeightDataset:
    data = WeightDataset(weights, **options)
    data.crop = True  # as a weight folder precomputed with --crop reads its pictures
    return data


def test_a_second_read_of_an_extra_picture_does_not_crop_again(weights, extra, crops):
    images = Images([extra], cropping(weights))
    first = images[0][0]
    assert torch.equal(images[0][0], first) and torch.equal(images[0][0], first)
    assert crops == [str(extra / "x_000.bmp")]
    none_kept = Images([extra], cropping(weights, crop_cache_bytes=0))  # the weight folder's budget holds
    none_kept[0], none_kept[0]
    assert len(crops) == 3


def test_an_edited_extra_picture_is_cropped_anew(weights, extra, crops):
    images = Images([extra], cropping(weights))
    picture = extra / "x_000.bmp"
    first = images[0][0]
    stat = picture.stat()
    os.utime(picture, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: cropped again, the same crop
    assert torch.equal(images[0][0], first) and len(crops) == 2
    assert torch.equal(images[0][0], first) and len(crops) == 2
    another_face_of_the_same_size(picture)  # edited: read anew, so refused, not trained on from the cache
    with pytest.raises(lowdim.LowdimError, match=f"{picture}: changed since this run started"):
        images[0]
