"""A weight folder an older lowdim made from pictures that link out of the identities folder (review BQ1): before
1ef893c, precompute recorded such a picture by its absolute (resolved) path. That folder still trains, and a rerun
of precompute into it retrains nothing: it only records those pictures by their place under the root. A relative
path that climbs out with '..' stays refused."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
from hypertrain_jobs import job as hyper_job  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images

from lowdim.errors import LowdimError
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_dataset import WeightDataset
from lowdim_sd.weight_index import read_index

pytestmark = pytest.mark.usefixtures("one_thread")


def precompute_job(tiny_sd, people, out) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out, config=TrainConfig(steps=1),
                         batch_subjects=2, crop=False)


@pytest.fixture
def linked_people(tmp_path):
    """Three identities whose pictures are links into a store outside the identities folder (a data set's copy)."""
    import torch

    store = tmp_path / "store"
    save_images(torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1, store, "p")
    people = tmp_path / "ids"
    for number, picture in enumerate(sorted(store.iterdir())):
        (people / f"person{number}").mkdir(parents=True)
        (people / f"person{number}" / "a.png").symlink_to(picture)
    return people


@pytest.fixture
def old_folder(tiny_sd, linked_people, tmp_path, model):
    """A weight folder whose index names each picture by its absolute resolved path, as 85ff867's precompute
    wrote it (``relative``: ``str(path.resolve())`` for a picture that resolves outside the root)."""
    out = tmp_path / "w"
    precompute(precompute_job(tiny_sd, linked_people, out), progress=False, model=model)
    index = json.loads((out / "index.json").read_text())
    for entry in index["identities"]:
        entry["images"] = [str((linked_people / image).resolve()) for image in entry["images"]]
    (out / "index.json").write_text(json.dumps(index, indent=1))
    assert all(image.startswith("/") for entry in read_index(out)["identities"] for image in entry["images"])
    return out


def test_a_folder_with_absolute_image_paths_from_an_older_lowdim_trains(old_folder, tmp_path):
    data = WeightDataset(old_folder, all_images=True)
    data.check_images()  # the pictures are there, with the bytes their weights were trained on
    assert len(data) == 3 and data.image(0).shape == (3, 16, 16)
    train_hypernet(hyper_job(old_folder, tmp_path / "h", steps=1, val_identities=0, checkpoint_every=0),
                   progress=False)
    assert (tmp_path / "h" / "hypernet.safetensors").is_file()


def test_a_rerun_into_it_retrains_nothing_and_records_the_pictures_under_the_root(tiny_sd, linked_people,
                                                                                  old_folder, model):
    shards = {path.name: path.read_bytes() for path in old_folder.glob("shard-*.safetensors")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "changed since it was precomputed; training it again"
        result = precompute(precompute_job(tiny_sd, linked_people, old_folder), progress=False, model=model)
    assert result.trained == [] and sorted(result.skipped) == ["person0", "person1", "person2"]
    assert {entry["name"]: entry["images"] for entry in read_index(old_folder)["identities"]} == {
        f"person{number}": [f"person{number}/a.png"] for number in range(3)}
    assert {path.name: path.read_bytes() for path in old_folder.glob("shard-*.safetensors")} == shards
    WeightDataset(old_folder).check_images()


def test_a_rerun_still_retrains_an_identity_whose_linked_picture_changed(tiny_sd, linked_people, old_folder,
                                                                         model):
    picture = (linked_people / "person1" / "a.png").resolve()
    picture.write_bytes((linked_people / "person0" / "a.png").read_bytes())
    with pytest.warns(UserWarning, match=r"person1: a.png changed since it was precomputed"):
        result = precompute(precompute_job(tiny_sd, linked_people, old_folder), progress=False, model=model)
    assert result.trained == ["person1"]


@pytest.mark.parametrize("image", ["../../../../etc/hostname", "person0/../../outside.png", "..\\..\\x.png", ""])
def test_a_relative_path_climbing_out_of_the_root_stays_refused(old_folder, image):
    index = json.loads((old_folder / "index.json").read_text())
    index["identities"][0]["images"] = [image]
    (old_folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(LowdimError, match=r"index.json: identity 'person0' names image .*no '\.\.'"):
        WeightDataset(old_folder)


# The linked pictures moved (review BR1): the identities copied with their links followed (``cp -rL``), the data set
# the links led to gone. ``--image-root`` finds each picture under the copy by the bytes the index recorded, a rerun
# of precompute retrains nothing, and where nothing is found the line says the paths are absolute.

def copied_and_gone(linked_people, tmp_path):
    """``cp -rL ids copy``, then the store the links led to removed: the index's absolute paths name nothing."""
    copy = tmp_path / "copy"
    shutil.copytree(linked_people, copy, symlinks=False)
    shutil.rmtree(tmp_path / "store")
    return copy


def test_image_root_finds_the_pictures_an_absolute_path_named_by_their_bytes(old_folder, linked_people, tmp_path):
    copy = copied_and_gone(linked_people, tmp_path)
    data = WeightDataset(old_folder, image_root=copy, all_images=True)
    data.check_images()
    assert sorted(data.image_path(item) for item in range(len(data))) == [
        copy / f"person{number}" / "a.png" for number in range(3)]


def test_without_one_the_line_says_the_paths_are_absolute_and_what_works(old_folder, linked_people, tmp_path):
    copy = copied_and_gone(linked_people, tmp_path)
    with pytest.raises(LowdimError, match=r"are gone, e\.g\. /.*store.*absolute path.*image.root.*by their bytes"):
        WeightDataset(old_folder).check_images()
    shutil.rmtree(copy / "person1")
    shutil.copytree(copy / "person0", copy / "person1")  # other bytes under the name: not the picture it was
    with pytest.raises(LowdimError, match=r"1 of the 3 .*absolute path.*no picture with the bytes it recorded.*"
                                          r"person1"):
        WeightDataset(old_folder, image_root=copy).check_images()


def test_a_rerun_over_copies_of_the_linked_pictures_retrains_nothing(tiny_sd, linked_people, old_folder, tmp_path,
                                                                      model):
    for picture in linked_people.glob("*/a.png"):  # the links replaced by copies of what they led to, at the root
        _unlink_keep(picture)
    shutil.rmtree(tmp_path / "store")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "a.png added": the same bytes, found under the root
        result = precompute(precompute_job(tiny_sd, linked_people, old_folder), progress=False, model=model)
    assert result.trained == [] and sorted(result.skipped) == ["person0", "person1", "person2"]
    assert {entry["name"]: entry["images"] for entry in read_index(old_folder)["identities"]} == {
        f"person{number}": [f"person{number}/a.png"] for number in range(3)}
    assert json.loads((old_folder / "index.json").read_text())["root"] == str(linked_people)


def _unlink_keep(picture) -> None:
    data = picture.read_bytes()
    picture.unlink()
    picture.write_bytes(data)
