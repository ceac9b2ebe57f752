"""A checkpoint whose tensors are readable and of the right shapes but could never have been written by the run:
``--resume`` refuses it in one line naming the file and the parameter or layer, rather than training on into a NaN
or naming nothing."""

from __future__ import annotations

import re

import checkpointed_runs
import pytest
import torch
from checkpointed_runs import train_run  # tests/sd, on the path as pytest puts it
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lowdim
from lowdim_sd import checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")
made, run = checkpointed_runs.made, checkpointed_runs.run  # its fixtures, used by name


def _edit_tensors(run, name, edit):
    """The checkpoint file's tensors edited, its metadata kept as it was."""
    path = run / "checkpoints" / "step-000002" / name
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    save_file(edit(load_file(str(path))), str(path), metadata=metadata)
    return path


def _refused(tiny_sd, faces, run, path) -> str:
    with pytest.raises(lowdim.LowdimError) as refused:
        train_run(tiny_sd, faces, run, resume=True)[1]
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"{path}: "), line
    assert line.endswith("delete the checkpoint folder step-000002 to resume from an older one"), line
    return line


def _negated(key):
    return lambda tensors: {k: (v.abs() + 1).neg() if k == key else v for k, v in tensors.items()}


def test_train_refuses_a_negative_second_moment_naming_the_parameter(tiny_sd, faces, run):
    path = _edit_tensors(run, "optimizer.safetensors", _negated("1.exp_avg_sq"))
    line = _refused(tiny_sd, faces, run, path)
    assert re.search(r"parameter 1: exp_avg_sq .*negative", line), line


def test_a_negative_first_moment_is_no_problem(tiny_sd, faces, run):
    """exp_avg is a signed running mean of the gradient: a negative one is what a run writes."""
    _edit_tensors(run, "optimizer.safetensors", _negated("1.exp_avg"))
    assert train_run(tiny_sd, faces, run, resume=True)[1].start_step == 2


@pytest.mark.parametrize("amsgrad, key", [(False, "exp_avg_sq"), (True, "max_exp_avg_sq")])
@pytest.mark.parametrize("kind", [torch.optim.Adam, torch.optim.AdamW])
def test_adam_refuses_a_negative_second_moment(tmp_path, kind, amsgrad, key):
    path = tmp_path / "step-000001" / "optimizer.safetensors"
    path.parent.mkdir()
    state = {"0.exp_avg": torch.zeros(2), "0.exp_avg_sq": torch.ones(2), "0.step": torch.tensor(1.0)}
    if amsgrad:
        state["0.max_exp_avg_sq"] = torch.ones(2)
    state[f"0.{key}"] = torch.tensor([0.5, -1e-12])
    save_file(state, str(path))
    trainable = [torch.nn.Parameter(torch.zeros(2))]
    said = f"optimizer state for parameter 0: {key} holds a negative value (-1e-12)"
    with pytest.raises(lowdim.LowdimError, match=f"^{re.escape(str(path))}: {re.escape(said)}"):
        checkpoints.load_optimizer(kind(trainable, amsgrad=amsgrad), trainable, path)


def test_an_optimizer_that_keeps_no_second_moment_is_not_second_guessed(tmp_path):
    """SGD's momentum buffer is signed; only Adam's second moments are known to be at least 0."""
    path = tmp_path / "step-000001" / "optimizer.safetensors"
    path.parent.mkdir()
    save_file({"0.momentum_buffer": torch.tensor([-1.0, -2.0])}, str(path))
    trainable = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9)
    checkpoints.load_optimizer(optimizer, trainable, path)
    assert torch.equal(optimizer.state[trainable[0]]["momentum_buffer"], torch.tensor([-1.0, -2.0]))


@pytest.mark.parametrize("key", ["evil", "unet.evil.A"])
def test_a_tensor_for_a_layer_the_run_lacks_is_named(tiny_sd, faces, run, key):
    path = _edit_tensors(run, "trainable.safetensors", lambda t: {**t, key: torch.zeros(1)})
    line = _refused(tiny_sd, faces, run, path)
    assert f"params for unexpected layers [{key!r}]" in line, line  # and no "missing layers []" beside it
