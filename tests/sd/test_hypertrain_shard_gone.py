"""A weight shard removed while train-hypernet reads it (by hand, or by a precompute that did not see the run):
the run stops between steps with the line naming the shard, and keeps its current step first, as a Ctrl-C
does, so fixing the folder and --resume lose none of the steps since the last periodic checkpoint."""

from __future__ import annotations

import json
import re

import pytest
import torch
from hypertrain_jobs import HYPER, TINY_VIT, job  # tests/sd, on the path as pytest puts it

import lowdim
import lowdim_sd.hypertrain as ht
from lowdim_cli.main import main
from lowdim_sd.hypertrain import train_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")


def remove_shards_during_step(monkeypatch, weights, step: int, aside):
    """Move every shard of ``weights`` to ``aside`` while step ``step`` computes its loss: the next batch's read
    finds them gone."""
    real, calls = ht.pair_losses, []

    def losses_then_remove(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            aside.mkdir()
            for shard in weights.glob("shard-*.safetensors"):
                shard.rename(aside / shard.name)
        return real(*args, **kwargs)

    monkeypatch.setattr(ht, "pair_losses", losses_then_remove)


def put_back(aside, weights):
    for shard in aside.iterdir():
        shard.rename(weights / shard.name)


def test_a_removed_shard_keeps_the_current_step_and_resume_ends_as_an_unbroken_run(weight_folders, tmp_path,
                                                                                    monkeypatch):
    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    options = {"steps": 3, "val_identities": 0, "checkpoint_every": 0, "alpha": 0.0}
    unbroken = train_hypernet(job(weights, tmp_path / "unbroken", **options), progress=False)

    # Gone while step 1 computes: the loader (accelerate's reads one batch ahead) fails before step 2 starts.
    remove_shards_during_step(monkeypatch, weights, 1, tmp_path / "aside")
    with pytest.raises(lowdim.LowdimError) as stopped:
        train_hypernet(job(weights, tmp_path / "h", **options), progress=False)
    line = str(stopped.value)
    saved = tmp_path / "h" / "checkpoints" / "step-000001"
    assert line.startswith(f"{weights / 'shard-00000.safetensors'}: removed since this run read {weights}'s index")
    assert f"step 1 is saved to {saved}" in line and "the same call with resume=True continues from it" in line
    assert "\n" not in line and (saved / "state.json").is_file()

    monkeypatch.undo()
    put_back(tmp_path / "aside", weights)
    rest = train_hypernet(job(weights, tmp_path / "h", resume=True, **options), progress=False)
    assert rest.start_step == 1 and rest.losses == unbroken.losses[1:]
    assert rest.net is not None and unbroken.net is not None
    ours, theirs = rest.net.state_dict(), unbroken.net.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)


@pytest.mark.parametrize("workers", [0, 1])
def test_the_command_says_it_in_one_line_with_its_resume_flag(weight_folders, tmp_path, monkeypatch, capsys,
                                                              workers):
    """With a DataLoader worker too, whose error comes back wrapped in its traceback; the worker reads a few
    batches ahead, so the step kept is the last one whose batch was read."""
    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    remove_shards_during_step(monkeypatch, weights, 1, tmp_path / "aside")
    args = ["train-hypernet", "-w", str(weights), "-o", str(tmp_path / "h"), "--encoder-config", json.dumps(TINY_VIT),
            "--width", str(HYPER["width"]), "--heads", "2", "--iterations", "1", "--steps", "8", "--batch-size", "2",
            "--checkpoint-every", "0", "--alpha", "0", "--num-workers", str(workers)]
    assert main(args) == 1
    err = capsys.readouterr().err
    text = " ".join(err.split())
    assert text.startswith(f"Error: {weights / 'shard-00000.safetensors'}: removed since this run read"), err
    kept = re.search(r"; step (\d+) is saved to (\S+): the same command plus --resume continues from it$", text)
    assert kept is not None and "Traceback" not in err, err
    step, folder = int(kept[1]), tmp_path / "h" / "checkpoints" / f"step-{int(kept[1]):06d}"
    assert kept[2] == str(folder) and (folder / "state.json").is_file() and 1 <= step < 8
    put_back(tmp_path / "aside", weights)
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0 and f"(from step {step})" in capsys.readouterr().out


def test_a_shard_that_vanishes_inside_safetensors_own_open_is_named_as_removed(weight_folders, tmp_path,
                                                                              monkeypatch):
    """safetensors raises FileNotFoundError for a file missing when it looks, but its own error type for one that
    goes between its look and its open (what a DataLoader worker reading ahead meets): removed, either way."""
    import safetensors

    from lowdim_sd.weight_dataset import WeightDataset

    weights = weight_folders(tmp_path / "data", "w", 3, seed=4)
    data = WeightDataset(weights)

    def vanishing(path, **kwargs):
        (weights / "shard-00000.safetensors").unlink()
        raise safetensors.SafetensorError(f"unable to open file <{path}> in read-only mode: No such file or "
                                          f"directory (2)")

    monkeypatch.setattr(safetensors, "safe_open", vanishing)
    with pytest.raises(lowdim.LowdimError, match=r"shard-00000\.safetensors: removed since this run read "):
        data.weights(0)
