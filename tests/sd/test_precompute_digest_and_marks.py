"""Which bytes a weight folder pairs with its θ, and when a reader claims the folder: precompute records each
picture's digest of the bytes its batch decoded (not of the file as it is once the batch has trained), and a
train-hypernet's mark is in the folder before it reads the index (a precompute in between would see no reader)."""

from __future__ import annotations

import pytest
from test_precompute_resume import entries, job, picture  # tests/sd helpers

import lowdim_sd.precompute as pre
import lowdim_sd.weight_dataset as weight_dataset
from lowdim_sd.images import load_image
from lowdim_sd.precompute import precompute
from lowdim_sd.weight_index import image_digest
from lowdim_sd.weight_readers import READERS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_picture_saved_over_while_its_batch_trains_is_recorded_as_trained_and_trained_again(tiny_sd, people,
                                                                                              tmp_path, model,
                                                                                              monkeypatch):
    target = people / "person0" / "img_000.png"
    trained_on = image_digest(target)
    training = pre.train

    def train_while_the_photo_is_edited(*args, **kwargs):
        result = training(*args, **kwargs)  # the batch read its pixels before training
        if image_digest(target) == trained_on:
            picture(target, 99)  # saved over before the batch is kept
        return result

    out = tmp_path / "w"
    with monkeypatch.context() as patched:
        patched.setattr(pre, "train", train_while_the_photo_is_edited)
        precompute(job(tiny_sd, people, out, batch_subjects=3), progress=False, model=model)
    assert entries(out)["person0"]["digests"][0] == trained_on  # the bytes θ was trained on
    with pytest.warns(UserWarning, match=r"^person0: img_000.png changed since it was precomputed"):
        again = precompute(job(tiny_sd, people, out, batch_subjects=3), progress=False, model=model)
    assert again.trained == ["person0"] and entries(out)["person0"]["digests"][0] == image_digest(target)


def test_a_picture_saved_over_while_it_is_read_is_read_again_so_its_digest_names_the_pixels_trained_on(
        tiny_sd, people, tmp_path, model, monkeypatch):
    target = people / "person0" / "img_000.png"
    loading, training = pre.load_face_image, pre.train
    reads, trained = [], []

    def read_while_the_photo_is_saved(path, *args, **kwargs):
        image = loading(path, *args, **kwargs)
        reads.append(path.name)
        if path == target and reads.count(path.name) == 1:
            picture(target, 98)  # its new bytes land just after the old ones were decoded
        return image

    def train_and_keep_its_pictures(model, subjects, *args, **kwargs):
        trained.extend(subject.images for subject in subjects)
        return training(model, subjects, *args, **kwargs)

    monkeypatch.setattr(pre, "load_face_image", read_while_the_photo_is_saved)
    monkeypatch.setattr(pre, "train", train_and_keep_its_pictures)
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out, batch_subjects=3), progress=False, model=model)
    assert (trained[0][0] - load_image(target, 16)).abs().max() < 1e-6  # the new picture, read again
    assert entries(out)["person0"]["digests"] == [image_digest(target), image_digest(people / "person0" /
                                                                                     "img_001.png")]


def test_a_readers_mark_is_in_the_folder_before_it_reads_the_index(tiny_sd, people, tmp_path, model, monkeypatch):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    marks_when_read = []
    reading = weight_dataset.read_index

    def read_index(folder):
        marks_when_read.append(sorted(path.name for path in (out / READERS).glob("*")) if (out / READERS).is_dir()
                               else [])
        return reading(folder)

    monkeypatch.setattr(weight_dataset, "read_index", read_index)
    data = weight_dataset.WeightDataset(out)
    assert marks_when_read and marks_when_read[0], "the index was read while no mark said a run reads the folder"
    del data
