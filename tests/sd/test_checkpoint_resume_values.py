"""A checkpoint whose tensors are readable and of the right shapes but could never have been written by the run:
``--resume`` refuses it in one line naming the file and the parameter or layer, rather than training on into a NaN
or naming nothing."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lowdim
from lowdim_sd import checkpoints
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = TrainConfig(steps=4, learning_rate=2e-2, augment=False, checkpoint_every=2)


def _run(tiny_sd, faces, out, steps=4, resume=False):
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    config = TrainConfig(**{**CONFIG.__dict__, "steps": steps})
    return train(model, [Subject(faces, 0)], trainable, config, out_dir=out, resume=resume, progress=False)


@pytest.fixture(scope="module")
def made(tiny_sd, tmp_path_factory):
    """A run of two steps with its checkpoint (step-000002), copied per test."""
    faces = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    out = tmp_path_factory.mktemp("made") / "run"
    _run(tiny_sd, faces, out, steps=2)
    return out


@pytest.fixture
def run(made, tmp_path):
    shutil.copytree(made, tmp_path / "run")
    return tmp_path / "run"


def _edit_tensors(run, name, edit):
    """The checkpoint file's tensors edited, its metadata kept as it was."""
    path = run / "checkpoints" / "step-000002" / name
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    save_file(edit(load_file(str(path))), str(path), metadata=metadata)
    return path


def _refused(tiny_sd, faces, run, path) -> str:
    with pytest.raises(lowdim.LowdimError) as refused:
        _run(tiny_sd, faces, run, resume=True)
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
    assert _run(tiny_sd, faces, run, resume=True).start_step == 2


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
