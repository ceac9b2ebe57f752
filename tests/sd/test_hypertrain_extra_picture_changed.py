"""An --extra-images picture replaced while train-hypernet runs: the run trains on the pictures it found at its start,
and must not take the new pixels into its diffusion term without a word. As for the weight folder's pictures
(tests/sd/test_hypertrain_picture_changed.py), it stops between steps with one line naming the picture and keeps its
step; a picture only touched, or saved again with its own bytes, trains on."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import torch
from hypertrain_jobs import HYPER, TINY_VIT, job  # tests/sd, on the path as pytest puts it
from images_for_tests import save_images  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim_sd.hypertrain as ht
from lowdim_cli.main import main
from lowdim_sd.hypertrain import train_hypernet
from lowdim_sd.hypertrain_io import Images
from lowdim_sd.weight_dataset import WeightDataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("hyperdata"), "w", 3, seed=4)


@pytest.fixture
def extra(tmp_path):
    """Two identities without weights (a flat folder, one picture each)."""
    save_images(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1, tmp_path / "extra", "x")
    return tmp_path / "extra"


def replace_with_another(picture):
    """``picture`` rewritten in place with the other extra picture's bytes, as an editor (or ``cp``) would."""
    other = next(path for path in sorted(picture.parent.glob("*.png")) if path != picture)
    shutil.copy(other, picture)


def test_a_replaced_extra_picture_is_refused_when_read_and_reads_again_once_put_back(weights, extra):
    images = Images([extra], WeightDataset(weights))
    picture = images.paths[0]
    before, original = images[0][0], picture.read_bytes()
    replace_with_another(picture)
    with pytest.raises(lowdim.LowdimError) as refused:
        images[0]
    line = str(refused.value)
    assert line.startswith(f"{picture}: changed since this run started"), line
    assert "\n" not in line
    assert torch.equal(images[1][0], images[1][0])  # the other still reads
    picture.write_bytes(original)
    assert torch.equal(images[0][0], before)


def test_an_extra_picture_touched_or_saved_with_its_own_bytes_still_reads(weights, extra):
    images = Images([extra], WeightDataset(weights))
    picture = images.paths[0]
    before = images[0][0]
    stat = picture.stat()
    os.utime(picture, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert torch.equal(images[0][0], before)
    picture.write_bytes(picture.read_bytes())  # saved again unchanged: a new mtime, the same bytes
    assert torch.equal(images[0][0], before)


def replace_picture_during_step(monkeypatch, picture, step: int, change=replace_with_another):
    """Rewrite ``picture`` (or ``change`` it otherwise) while step ``step`` computes its pairs' loss: a later read of
    the extras meets it (the first step's extras were read with its own batch, before)."""
    real, calls = ht.pair_losses, []

    def losses_then_replace(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            change(picture)
        return real(*args, **kwargs)

    monkeypatch.setattr(ht, "pair_losses", losses_then_replace)


def test_the_run_stops_between_steps_keeps_its_step_and_resumes_once_the_picture_is_back(
        weights, extra, tmp_path, monkeypatch):
    picture = sorted(extra.glob("*.png"))[0]
    original = picture.read_bytes()
    replace_picture_during_step(monkeypatch, picture, 2)
    options = {"steps": 6, "val_identities": 0, "checkpoint_every": 0, "batch_size": 3, "extra_images": [extra],
               "extra_batch_size": 2, "diffusion_iterates": "last"}
    with pytest.raises(lowdim.LowdimError) as stopped:
        train_hypernet(job(weights, tmp_path / "h", **options), progress=False)
    line = str(stopped.value)
    kept = re.search(r"; step (\d+) is saved to (\S+): ", line)
    assert line.startswith(f"{picture}: changed since this run started"), line
    assert kept is not None and "\n" not in line, line
    step = int(kept[1])
    assert 1 <= step < 6 and (tmp_path / "h" / "checkpoints" / f"step-{step:06d}" / "state.json").is_file()

    monkeypatch.undo()
    picture.write_bytes(original)  # put back, as the line says: the run goes on from its step
    rest = train_hypernet(job(weights, tmp_path / "h", resume=True, **options), progress=False)
    assert rest.start_step == step and len(rest.losses) == 6 - step


def stopped_command(weights, extra, out, capsys, workers: int) -> str:
    """The one error line of a train-hypernet command on ``extra`` that must stop, its step kept (checked here)."""
    args = ["train-hypernet", "-w", str(weights), "-o", str(out), "--encoder-config", json.dumps(TINY_VIT),
            "--width", str(HYPER["width"]), "--heads", "2", "--iterations", "1", "--steps", "10", "--batch-size", "3",
            "--val-identities", "0", "--checkpoint-every", "0", "--extra-images", str(extra),
            "--extra-batch-size", "2", "--diffusion-iterates", "last", "--num-workers", str(workers)]
    assert main(args) == 1
    err = capsys.readouterr().err
    text = " ".join(err.split())
    kept = re.search(r"; step (\d+) is saved to (\S+): the same command plus --resume continues from it$", text)
    assert kept is not None and "Traceback" not in err, err
    assert 1 <= int(kept[1]) < 10 and (out / "checkpoints" / f"step-{int(kept[1]):06d}").is_dir()
    return text


@pytest.mark.parametrize("workers", [0, 1])
def test_the_command_says_it_in_one_line_from_a_worker_too(weights, extra, tmp_path, monkeypatch, capsys, workers):
    """A DataLoader worker holds its own copy of the extra images (and of what the run saw of each at its start)."""
    picture = sorted(extra.glob("*.png"))[0]
    replace_picture_during_step(monkeypatch, picture, 2)
    text = stopped_command(weights, extra, tmp_path / "h", capsys, workers)
    assert text.startswith(f"Error: {picture}: changed since this run started"), text


def test_an_extra_picture_removed_mid_run_stops_it_the_same_way(weights, extra, tmp_path, monkeypatch, capsys):
    """As a weight folder's picture gone mid-run does: one line (not a worker's traceback), the step kept."""
    picture = sorted(extra.glob("*.png"))[0]
    replace_picture_during_step(monkeypatch, picture, 2, change=lambda path: path.unlink())
    text = stopped_command(weights, extra, tmp_path / "h", capsys, workers=1)
    assert text.startswith(f"Error: image file {picture} not found"), text
