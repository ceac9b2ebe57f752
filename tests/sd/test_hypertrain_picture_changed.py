"""A training picture replaced while train-hypernet runs (someone editing the data set during a long run): the run
checked each picture's bytes against the weight index at its start, and must not pair the new pixels with the old
weights for the rest of the run. It stops between steps with one line naming the picture and keeps its step, as
for a removed shard (tests/sd/test_hypertrain_shard_gone.py); a picture only touched (same bytes) trains on."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import torch
from hypertrain_jobs import HYPER, TINY_VIT, job  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim_sd.hypertrain as ht
import lowdim_sd.weight_dataset as wd
from lowdim_cli.main import main
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


def replace_with_another(picture, faces):
    """``picture`` replaced with another identity's bytes, written aside and renamed over it as an editor saves: a
    DataLoader worker prefetching the next batch meets the old picture or the new one, never a half-written file
    (``cp``'s truncate-then-write, read in between, is "not a readable image": right, but not this test's case)."""
    other = next(path for path in sorted(faces.glob("*.png")) if path != picture)
    aside = picture.with_name(f".{picture.name}.new")
    shutil.copy(other, aside)
    os.replace(aside, picture)


def checked_dataset(weights) -> WeightDataset:
    """As train-hypernet reads it: the start check on a subset of every name, training on another subset."""
    full = WeightDataset(weights)
    full.subset(full.names).check_images()
    return full.subset(full.names)


def test_a_picture_replaced_after_the_start_check_is_refused_when_read(weight_folders, tmp_path):
    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    data = checked_dataset(weights)
    picture = data.image_path(0)
    data.image(0)
    replace_with_another(picture, tmp_path / "data" / "faces-w")
    with pytest.raises(lowdim.LowdimError) as refused:
        data.image(0)
    line = str(refused.value)
    assert line.startswith(f"{picture}: changed since this run checked it"), line
    assert str(weights) in line and "\n" not in line
    assert torch.equal(data.image(1), data.image(1))  # the others still read


def test_a_picture_put_back_reads_again(weight_folders, tmp_path):
    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    data = checked_dataset(weights)
    picture = data.image_path(0)
    before, original = data.image(0), picture.read_bytes()
    replace_with_another(picture, tmp_path / "data" / "faces-w")
    with pytest.raises(lowdim.LowdimError):
        data.image(0)
    picture.write_bytes(original)
    assert torch.equal(data.image(0), before)


def test_a_picture_touched_or_rewritten_with_its_own_bytes_still_reads(weight_folders, tmp_path):
    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    data = checked_dataset(weights)
    picture = data.image_path(0)
    before = data.image(0)
    stat = picture.stat()
    os.utime(picture, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert torch.equal(data.image(0), before)
    picture.write_bytes(picture.read_bytes())  # saved again unchanged: a new mtime, the same bytes
    assert torch.equal(data.image(0), before)


def test_a_cropped_picture_is_checked_when_the_crop_cache_reads_it(weight_folders, tmp_path, monkeypatch):
    """With a crop, a cached crop is of the checked picture; a read from disk (a cache miss) is checked."""
    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    monkeypatch.setattr(wd, "load_face_image", lambda path, resolution, *args: torch.zeros(3, resolution, resolution))
    data = checked_dataset(weights)
    data.crop = True
    data.image(0)  # cached
    replace_with_another(data.image_path(0), tmp_path / "data" / "faces-w")
    data.image(0)  # from the cache: the crop of the picture the start check saw
    data._crops = wd._CropCache(0)  # nothing kept: every read is from disk
    with pytest.raises(lowdim.LowdimError, match="changed since this run checked it"):
        data.image(0)


def replace_picture_during_step(monkeypatch, picture, faces, step: int):
    """Rewrite ``picture`` while step ``step`` computes its loss: the next batch's read meets the new bytes."""
    real, calls = ht.pair_losses, []

    def losses_then_replace(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            replace_with_another(picture, faces)
        return real(*args, **kwargs)

    monkeypatch.setattr(ht, "pair_losses", losses_then_replace)


def test_the_run_stops_between_steps_and_keeps_its_step(weight_folders, tmp_path, monkeypatch):
    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    picture = WeightDataset(weights).image_path(0)
    original = picture.read_bytes()
    replace_picture_during_step(monkeypatch, picture, tmp_path / "data" / "faces-w", 1)
    options = {"steps": 3, "val_identities": 0, "checkpoint_every": 0, "alpha": 0.0, "batch_size": 3}
    with pytest.raises(lowdim.LowdimError) as stopped:
        train_hypernet(job(weights, tmp_path / "h", **options), progress=False)
    line = str(stopped.value)
    saved = tmp_path / "h" / "checkpoints" / "step-000001"
    assert line.startswith(f"{picture}: changed since this run checked it"), line
    assert f"step 1 is saved to {saved}" in line and "\n" not in line and (saved / "state.json").is_file()

    monkeypatch.undo()
    picture.write_bytes(original)  # put back, as the line says: the run goes on from its step
    rest = train_hypernet(job(weights, tmp_path / "h", resume=True, **options), progress=False)
    assert rest.start_step == 1 and len(rest.losses) == 2


@pytest.mark.parametrize("workers", [0, 1])
def test_the_command_says_it_in_one_line_from_a_worker_too(weight_folders, tmp_path, monkeypatch, capsys, workers):
    """A DataLoader worker holds its own copy of the data set (and of what the start check saw of each picture)."""
    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    picture = WeightDataset(weights).image_path(0)
    replace_picture_during_step(monkeypatch, picture, tmp_path / "data" / "faces-w", 1)
    args = ["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config", json.dumps(TINY_VIT),
            "--width", str(HYPER["width"]), "--heads", "2", "--iterations", "1", "--steps", "8", "--batch-size", "3",
            "--val-identities", "0", "--checkpoint-every", "0", "--alpha", "0", "--num-workers", str(workers)]
    assert main(args) == 1
    err = capsys.readouterr().err
    text = " ".join(err.split())
    assert text.startswith(f"Error: {picture}: changed since this run checked it"), err
    kept = re.search(r"; step (\d+) is saved to (\S+): the same command plus --resume continues from it$", text)
    assert kept is not None and "Traceback" not in err, err
    assert 1 <= int(kept[1]) < 8 and (tmp_path / "h" / "checkpoints" / f"step-{int(kept[1]):06d}").is_dir()
