"""A run keeps only its newest --keep-checkpoints checkpoints: older ones go as each new one completes, so a long
run with frequent checkpoints (a --full model's are the UNet's size) does not fill the disk."""

from __future__ import annotations

import pytest

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_only_the_newest_checkpoints_are_kept_and_the_run_resumes_from_the_last(tiny_sd, faces, tmp_path):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    config = TrainConfig(steps=4, checkpoint_every=1, keep_checkpoints=2, augment=False)
    train(model, [Subject(faces, 0)], trainable, config, out_dir=tmp_path, progress=False)
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["step-000003", "step-000004"]
    resumed = train(model, [Subject(faces, 0)], trainable, config, out_dir=tmp_path, resume=True, progress=False)
    assert resumed.start_step == 4


def test_a_step_folder_a_stop_left_unfinished_neither_stays_nor_displaces_a_kept_checkpoint(tmp_path):
    """A forced stop can cut a checkpoint's save short, leaving step-N/ without its state.json: no checkpoint, so
    the next completed save removes it, and the newest complete ones are the ones kept."""
    import json

    from lowdim_sd import checkpoints

    folder = tmp_path / "checkpoints"
    for step in (1, 2):
        checkpoints.complete(checkpoints.step_folder(tmp_path, step), {"step": step}, keep=2)
    cut_short = checkpoints.step_folder(tmp_path, 9)  # a later save that a third Ctrl-C ended
    (cut_short / "trainable.safetensors").write_bytes(b"")
    checkpoints.complete(checkpoints.step_folder(tmp_path, 3), {"step": 3}, keep=2)
    assert sorted(path.name for path in folder.iterdir()) == ["step-000002", "step-000003"]
    assert json.loads((folder / "step-000002" / "state.json").read_text()) == {"step": 2}
