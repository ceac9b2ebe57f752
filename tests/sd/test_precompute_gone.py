"""An identity whose sub-folder was deleted since it was precomputed (a person taken out of the data set): a
resumed precompute removes it from the index and erases its weights from the shards, saying so, and train-hypernet
then reads the folder; before, its entry stayed, and train-hypernet refused the folder with no way out but editing
index.json by hand."""

from __future__ import annotations

import json
import shutil

import accelerate
import pytest
import torch
from fake_processes import FakeState  # tests/sd, on the path as pytest puts it
from safetensors import safe_open
from safetensors.torch import load_file

import lowdim
from lowdim_sd.precompute import PrecomputeJob, precompute, read_index
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


def job(tiny_sd, people, out, **kwargs) -> PrecomputeJob:
    return PrecomputeJob(model=str(tiny_sd), identities=people, out=out,
                         **{"config": TrainConfig(steps=1), "batch_subjects": 2, "crop": False, **kwargs})


def shard_names(path) -> list[str]:
    with safe_open(str(path), framework="pt") as opened:
        return json.loads(opened.metadata()["identities"])


def test_a_deleted_identity_leaves_the_index_and_its_row_is_erased(tiny_sd, people, tmp_path, model):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)  # shard 0: person0, person1; 1: person2
    before = {entry["name"]: entry for entry in read_index(out)["identities"]}
    with pytest.raises(lowdim.LowdimError, match="rerun the lowdim precompute that made") as refused:
        shutil.rmtree(people / "person1")
        WeightDataset(out).check_images()
    assert "removed on purpose" in str(refused.value)
    kept = load_file(out / before["person0"]["shard"])
    with pytest.warns(UserWarning, match=rf"^person1 has no pictures under {people} any more: removed from the "
                                         rf"index, and its weights erased from {out}$"):
        result = precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert result.trained == [] and result.skipped == ["person0", "person2"]
    assert sorted(entry["name"] for entry in read_index(out)["identities"]) == ["person0", "person2"]
    shard = out / before["person1"]["shard"]
    erased, row = load_file(shard), before["person1"]["row"]
    assert shard_names(shard)[row] == "" and "person1" not in shard_names(shard)
    assert all(not erased[key][row].any() for key in erased)  # nothing of that person's θ is left
    assert all(torch.equal(erased[key][before["person0"]["row"]], kept[key][before["person0"]["row"]])
               for key in kept)  # the other identity's row is untouched
    WeightDataset(out).check_images()  # train-hypernet reads the folder again
    shutil.rmtree(people / "person2")  # alone in its shard: the shard goes
    with pytest.warns(UserWarning, match="person2 has no pictures"):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert not (out / before["person2"]["shard"]).exists()


def test_identities_past_limit_are_not_gone(tiny_sd, people, tmp_path, model, recwarn):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert precompute(job(tiny_sd, people, out, limit=1), progress=False, model=model).skipped == ["person0"]
    assert len(read_index(out)["identities"]) == 3 and not [w for w in recwarn if "no pictures" in str(w.message)]


def test_under_several_processes_the_main_one_cleans_the_merged_index(tiny_sd, people, tmp_path, model,
                                                                      monkeypatch):
    out = tmp_path / "w"
    precompute(job(tiny_sd, people, out), progress=False, model=model)  # all three in index.json
    shutil.rmtree(people / "person0")
    monkeypatch.setattr(accelerate, "PartialState", lambda **_: FakeState(1))
    precompute(job(tiny_sd, people, out), progress=False, model=model)  # process 2: says nothing, cleans nothing
    assert "person0" in {entry["name"] for entry in read_index(out)["identities"]}
    monkeypatch.setattr(accelerate, "PartialState", lambda **_: FakeState(0))
    with pytest.warns(UserWarning, match="person0 has no pictures"):
        precompute(job(tiny_sd, people, out), progress=False, model=model)
    assert sorted(entry["name"] for entry in read_index(out)["identities"]) == ["person1", "person2"]


def test_small_photos_are_told_in_one_warning_for_the_whole_run(tiny_sd, tmp_path, model):
    from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

    for number in range(4):  # 12x12 photos for a 16 px model: each upscaled
        images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(number)) * 2 - 1
        save_images(images, tmp_path / "small" / f"p{number}", "img")
    with pytest.warns(UserWarning) as caught:
        precompute(job(tiny_sd, tmp_path / "small", tmp_path / "w"), progress=False, model=model)
    upscaled = [str(w.message) for w in caught if "upscal" in str(w.message)]
    assert len(upscaled) == 1, upscaled  # not one line per photo (8), nor per batch (2)
    assert upscaled[0].startswith("8 of 8 images are smaller than 16x16 pixels and are upscaled")
