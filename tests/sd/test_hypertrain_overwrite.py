"""train-hypernet --overwrite: start over in a folder an earlier run left, as `lowdim train --overwrite` does, so a
user never has to delete a run folder by hand; and refused settings still cost the earlier run nothing."""

from __future__ import annotations

import pytest
import torch
from hypertrain_jobs import job, records  # tests/sd, on the path as pytest puts it
from safetensors.torch import load_file

import lowdim
from lowdim_cli.main import main
from lowdim_sd import checkpoints
from lowdim_sd.hypertrain import train_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def weights(weight_folders, tmp_path_factory):
    return weight_folders(tmp_path_factory.mktemp("overwrite-data"), "w", 4, seed=5)


def _same_file(a, b) -> bool:
    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize("checkpoint_every", [1, 0], ids=["with-checkpoints", "finished-without-checkpoints"])
def test_overwrite_starts_over_as_a_fresh_run_would(weights, tmp_path, checkpoint_every):
    fresh = train_hypernet(job(weights, tmp_path / "fresh", steps=3, seed=1), progress=False)
    train_hypernet(job(weights, tmp_path / "o", steps=4, checkpoint_every=checkpoint_every), progress=False)
    again = train_hypernet(job(weights, tmp_path / "o", steps=3, seed=1, overwrite=True), progress=False)
    assert again.start_step == 0 and again.losses == fresh.losses
    assert _same_file(again.path, fresh.path)
    assert [r["step"] for r in records(again.metrics, "train")] == [1, 2, 3]  # none of the earlier run's
    kept = sorted(folder.name for folder in (tmp_path / "o" / checkpoints.FOLDER).glob("step-*"))
    assert kept == ["step-000002", "step-000003"]  # keep_checkpoints=2 of this run; the earlier run's step 4 went


def test_an_overwrite_stopped_while_the_network_is_built_leaves_the_earlier_run_to_resume(weights, tmp_path,
                                                                                         monkeypatch):
    """Ctrl-C while the network is built: the earlier run is cleared only past that, so it stands whole, and a
    --resume continues it, its split (two held out) read back."""
    train_hypernet(job(weights, tmp_path / "o", steps=1, val_identities=2, checkpoint_every=1), progress=False)
    split = (tmp_path / "o" / "split.json").read_bytes()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("lowdim_sd.hypertrain._network", stopped)
        with pytest.raises(KeyboardInterrupt):
            train_hypernet(job(weights, tmp_path / "o", steps=1, seed=1, overwrite=True), progress=False)
    assert (tmp_path / "o" / "split.json").read_bytes() == split
    resumed = train_hypernet(job(weights, tmp_path / "o", steps=2, val_identities=2, checkpoint_every=1,
                                 resume=True), progress=False)
    assert resumed.start_step == 1 and len(resumed.val_names) == 2


def test_a_refused_overwrite_leaves_the_earlier_run_whole(weights, tmp_path):
    train_hypernet(job(weights, tmp_path / "o", steps=2), progress=False)
    before = sorted(path.relative_to(tmp_path) for path in (tmp_path / "o").rglob("*"))
    with pytest.raises(lowdim.LowdimError, match="held-out identities of 4"):
        train_hypernet(job(weights, tmp_path / "o", steps=2, val_identities=4, overwrite=True), progress=False)
    assert sorted(path.relative_to(tmp_path) for path in (tmp_path / "o").rglob("*")) == before


def test_resume_and_overwrite_together_are_refused(weights, tmp_path):
    with pytest.raises(lowdim.LowdimError, match="resume=True continues .* overwrite=True starts .* over: pass one"):
        train_hypernet(job(weights, tmp_path / "o", resume=True, overwrite=True), progress=False)
    assert not (tmp_path / "o").exists()


def test_the_cli_refusal_names_overwrite_and_the_flag_starts_over(weights, tmp_path, capsys):
    args = ["train-hypernet", "-w", str(weights), "--encoder-config", "tiny", "--steps", "1", "--val-identities", "1",
            "--checkpoint-every", "1", "-o", str(tmp_path / "h")]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    said = capsys.readouterr().err
    assert "holds checkpoints of an earlier run" in said and "--overwrite to start over" in said
    assert main([*args, "--overwrite"]) == 0
    said = capsys.readouterr().out
    assert "1 step in" in said and "from step" not in said  # from the start, said only of a --resume
    assert main(["train-hypernet", "--help"]) == 0
    assert "Start over in --out" in " ".join(capsys.readouterr().out.split())
