"""With the crop off, ``personalize`` decodes its photo once: the check before the model loads hands the decoded
picture to the run, which trains on what ``load_image`` makes of the file (its centre square, the upscaling line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from images_for_tests import decodes_of  # tests/sd, on the path as pytest puts it
from PIL import Image

import lowdim_sd.personalize as personalize_module
from lowdim_sd.images import load_image, open_rgb
from lowdim_sd.personalize import PersonalizeJob, personalize

pytestmark = pytest.mark.usefixtures("one_thread")


def photo(path: Path, width: int, height: int) -> Path:
    pixels = np.random.default_rng(5).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_with_the_crop_off_the_photo_is_decoded_once_and_trained_on_as_load_image_reads_it(tiny_sd, tmp_path,
                                                                                          monkeypatch):
    image = photo(tmp_path / "me.png", 48, 40)  # not square: the centre square is cut from it
    trained_on = []
    train = personalize_module.train

    def recorded(model, subjects, *args, **kwargs):
        trained_on.append(subjects[0].images.clone())
        return train(model, subjects, *args, **kwargs)

    monkeypatch.setattr(personalize_module, "train", recorded)
    decoded = decodes_of(image, monkeypatch)
    result = personalize(PersonalizeJob(model=str(tiny_sd), image=image, out=tmp_path / "out", steps=1,
                                        preview=False, crop=False), progress=False)
    assert len(decoded) == 1, f"the photo was decoded {len(decoded)} times"
    assert result.adapter.is_file()
    monkeypatch.undo()
    size = trained_on[0].shape[-1]
    assert torch.equal(trained_on[0], load_image(image, size)[None])  # the picture the file read gives


def test_a_picture_handed_to_load_image_is_read_as_the_file_is_small_ones_said(tmp_path):
    small = photo(tmp_path / "small.png", 30, 24)
    with pytest.warns(UserWarning, match="upscal") as told:
        handed = load_image(small, 32, picture=open_rgb(small))
    with pytest.warns(UserWarning, match="upscal") as told_again:
        read = load_image(small, 32)
    assert torch.equal(handed, read) and str(told[0].message) == str(told_again[0].message)
