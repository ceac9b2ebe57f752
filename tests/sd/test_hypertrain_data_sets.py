"""The weight folders ``lowdim train-hypernet`` reads (phase 1's data): several folders as one data set, a subset
of it, folders that cannot be read together, the identities a precompute resume holds, and the same person in two
folders held out together."""

from __future__ import annotations

import random
import shutil

import pytest
import torch
from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images

import lowdim
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.precompute import PrecomputeJob, precompute
from lowdim_sd.train import TrainConfig
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def more_weights(weight_folders, tmp_path_factory):
    """Two more identities, made alike in another folder (with the same identity names as ``weights``)."""
    return weight_folders(tmp_path_factory.mktemp("more"), "w2", 2, seed=10)


def test_several_weight_folders_read_as_one_data_set(weights, more_weights, tmp_path):
    both = WeightDataset([weights, more_weights])
    assert both.names == [f"w/person_00{i}" for i in range(4)] + ["w2/person_000", "w2/person_001"]
    assert WeightDataset([more_weights, weights]).names == both.names  # numbers seed noise: order-free
    for folder, offset in ((weights, 0), (more_weights, 4)):
        alone = WeightDataset(folder)
        for item in range(len(alone)):
            image, theta = both[offset + item]
            want_image, want_theta = alone[item]
            assert torch.equal(image, want_image)
            assert all(torch.equal(theta[layer][k], v) for layer, p in want_theta.items() for k, v in p.items())
    result = train_hypernet(job([weights, more_weights], tmp_path / "h", steps=2, val_identities=2), progress=False)
    assert sorted(result.train_names + result.val_names) == sorted(both.names)


def test_a_subset_reads_like_a_fresh_data_set_without_reading_the_indexes(weights, more_weights, monkeypatch):
    import lowdim_sd.weight_dataset as wd

    both = WeightDataset([weights, more_weights])
    names = ["w2/person_001", "w/person_002"]
    fresh = WeightDataset([weights, more_weights], names=names, all_images=True)
    monkeypatch.setattr(wd, "read_index", lambda folder: pytest.fail(f"read {folder} again"))
    part = both.subset(names, all_images=True)
    assert part.names == names and part.items == fresh.items and len(part) == len(fresh)
    for item in range(len(part)):
        assert torch.equal(part[item][0], fresh[item][0])
        assert all(torch.equal(part[item][1][layer][k], v) for layer, p in fresh[item][1].items() for k, v in p.items())
    assert len(both) == 6 and both.names[0] == "w/person_000"  # the whole set is untouched
    with pytest.raises(lowdim.LowdimError, match="no identity named nobody"):
        both.subset(["nobody"])


def test_weight_folders_made_differently_or_named_alike_are_refused(weight_folders, weights, tmp_path):
    other_recipe = weight_folders(tmp_path, "w3", 1, seed=11, steps=4)
    steps = r"made with other settings .*TrainConfig\(steps=\.\.\.\) \(3 in .*, 4 in "  # both values, by folder
    with pytest.raises(lowdim.LowdimError, match=steps):
        WeightDataset([weights, other_recipe])
    with pytest.raises(lowdim.LowdimError, match="distinct names"):
        WeightDataset([weights, weight_folders(tmp_path / "elsewhere", "w", 1, seed=12)])


def test_precompute_refuses_to_resume_with_other_identities(tiny_sd, tmp_path):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    for folder in ("a", "b"):
        save_images(images, tmp_path / folder, "person")
    precompute(PrecomputeJob(model=str(tiny_sd), identities=tmp_path / "a", out=tmp_path / "w",
                             config=TrainConfig(steps=1), crop=False), progress=False)
    with pytest.raises(lowdim.LowdimError, match="holds weights of the identities in .*a, not .*b"):
        precompute(PrecomputeJob(model=str(tiny_sd), identities=tmp_path / "b", out=tmp_path / "w",
                                 config=TrainConfig(steps=1), crop=False), progress=False)


def test_the_same_identities_in_two_weight_folders_are_held_out_together(weights, tmp_path):
    """Precomputing the same identities twice (another seed, say) gives each person two names; a held-out
    copy whose twin trains would make validation measure memory, not generalisation."""
    from types import SimpleNamespace

    from lowdim_sd.hypertrain_io import split_identities

    twice = tmp_path / "again"
    shutil.copytree(weights, twice)  # the same index: the same identities folder and images
    full = WeightDataset([weights, twice])
    people = full.people()
    assert len(full.names) == 8 and len(set(people.values())) == 4
    held_out = set()
    for seed in range(8):
        run = SimpleNamespace(resume=False, val_identities=1, val_fraction=0.0, seed=seed)
        train, val = split_identities(full.names, run, tmp_path / f"s{seed}", people)
        assert len(val) == 2 and {people[n] for n in val}.isdisjoint(people[n] for n in train)
        held_out.add(people[val[0]])
    assert len(held_out) > 1  # the seed still picks who is held out
    # One folder, or identities of their own: the draw of a shuffle of the names, as before people counted.
    run = SimpleNamespace(resume=False, val_identities=2, val_fraction=0.0, seed=3)
    alone = WeightDataset(weights)
    assert split_identities(alone.names, run, tmp_path / "one", alone.people()) == \
        split_identities(alone.names, run, tmp_path / "plain")
    shuffled = sorted(alone.names)
    random.Random(3).shuffle(shuffled)
    assert split_identities(alone.names, run, tmp_path / "two")[1] == sorted(shuffled[:2])
