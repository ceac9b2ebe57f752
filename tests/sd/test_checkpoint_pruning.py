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
