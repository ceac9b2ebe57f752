"""A weight folder an older lowdim made from pictures that link out of the identities folder (review BQ1): before
1ef893c, precompute recorded such a picture by its absolute (resolved) path. That folder still trains, and a rerun
of precompute into it retrains nothing: it only records those pictures by their place under the root. A relative
path that climbs out with '..' stays refused."""

from __future__ import annotations

import json
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
