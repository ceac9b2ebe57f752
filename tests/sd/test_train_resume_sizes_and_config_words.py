"""A refused resume of the low-level ``train(model, subjects, trainable, config)`` names what its caller passed:
the pictures' real size (height x width, both sides for non-square ones), and TrainConfig's fields, not the fields
of a TrainJob the caller never made. A square run still records its side as the plain int it always did, so its
checkpoints keep resuming."""

from __future__ import annotations

import json
import re

import pytest
import torch

import lowdim
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _pictures(height: int, width: int) -> torch.Tensor:
    return torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(1)) * 2 - 1


def _run(tiny_sd, out, pictures, resume=False, **config):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    settings = {"steps": 2, "learning_rate": 2e-2, "checkpoint_every": 1, "augment": False, **config}
    return train(model, [Subject(pictures, 0)], trainable, TrainConfig(**settings), out_dir=out, resume=resume,
                 progress=False)


def _recorded_resolution(out) -> object:
    state = json.loads((out / "checkpoints" / "step-000002" / "state.json").read_text())
    return state["settings"]["inputs"]["resolution"]


def test_other_non_square_pictures_are_named_by_both_sides(tiny_sd, tmp_path):
    _run(tiny_sd, tmp_path, _pictures(16, 24))
    assert _recorded_resolution(tmp_path) == "16x24"
    with pytest.raises(lowdim.LowdimError, match=re.escape("the subjects' picture size (16x24 there, 16x32 now)")):
        _run(tiny_sd, tmp_path, _pictures(16, 32), resume=True, steps=3)
    assert _run(tiny_sd, tmp_path, _pictures(16, 24), resume=True, steps=3).start_step == 2  # the same pictures


def test_a_square_run_records_its_side_as_before_and_resumes(tiny_sd, tmp_path):
    _run(tiny_sd, tmp_path, _pictures(16, 16))
    assert _recorded_resolution(tmp_path) == 16  # what checkpoints of square runs always recorded
    assert _run(tiny_sd, tmp_path, _pictures(16, 16), resume=True, steps=3).start_step == 2
    with pytest.raises(lowdim.LowdimError, match=re.escape("the subjects' picture size (16 there, 24 now)")):
        _run(tiny_sd, tmp_path, _pictures(24, 24), resume=True, steps=4)


def test_a_non_square_checkpoint_that_recorded_only_the_width_still_resumes(tiny_sd, tmp_path):
    """Checkpoints written before both sides were recorded say the width alone: the same pictures resume them."""
    _run(tiny_sd, tmp_path, _pictures(16, 24))
    state_file = tmp_path / "checkpoints" / "step-000002" / "state.json"
    state = json.loads(state_file.read_text())
    state["settings"]["inputs"]["resolution"] = 24
    state_file.write_text(json.dumps(state))
    assert _run(tiny_sd, tmp_path, _pictures(16, 24), resume=True, steps=3).start_step == 2
    with pytest.raises(lowdim.LowdimError, match="the reference images differ"):
        _run(tiny_sd, tmp_path, _pictures(24, 24).flip(0), resume=True, steps=3)


@pytest.mark.parametrize(("change", "named"), [
    ({"learning_rate": 0.5}, "TrainConfig(learning_rate=...) (0.02 there, 0.5 now)"),
    ({"max_grad_norm": 2.0}, "TrainConfig(max_grad_norm=...) (1.0 there, 2.0 now)"),
    ({"augment": True}, "TrainConfig(augment=...) (off there, on now)"),
])
def test_a_low_level_caller_is_told_the_train_config_field_it_passed(tiny_sd, tmp_path, change, named):
    _run(tiny_sd, tmp_path, _pictures(16, 16))
    with pytest.raises(lowdim.LowdimError, match=re.escape(named)) as refused:
        _run(tiny_sd, tmp_path, _pictures(16, 16), resume=True, steps=3, **change)
    assert "TrainJob" not in str(refused.value)
