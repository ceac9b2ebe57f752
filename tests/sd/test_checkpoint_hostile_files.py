"""A checkpoint folder someone else made or damaged (a shared run folder, a hand edit): ``train`` and ``train-hypernet``
resume from it exactly or refuse it in one line naming the file and what is wrong, never with a traceback, a NaN
blamed on the learning rate, or a silently fresh optimizer; and a step folder that is a link is neither read nor
written through."""

from __future__ import annotations

import json
import re
import shutil

import checkpointed_runs
import pytest
import torch
from checkpointed_runs import train_run  # tests/sd, on the path as pytest puts it
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lowdim
from lowdim_sd import checkpoints
from lowdim_sd.loading import load_sd
from lowdim_sd.modes import adapter_trainable, resolve_layers
from lowdim_sd.train import Subject, train

pytestmark = pytest.mark.usefixtures("one_thread")
made, run = checkpointed_runs.made, checkpointed_runs.run  # its fixtures, used by name

DELETE_IT = "delete it to resume from an older one"


def _step(run):
    return run / "checkpoints" / "step-000002"


def _resume_refused(tiny_sd, faces, run, said: str) -> str:
    with pytest.raises(lowdim.LowdimError) as refused:
        train_run(tiny_sd, faces, run, resume=True)
    line = str(refused.value)
    assert "\n" not in line and re.search(said, line), line
    return line


def _edit_state(run, edit):
    path = _step(run) / "state.json"
    state = json.loads(path.read_text())
    path.write_text(edit(state) if callable(edit) else edit)


@pytest.mark.parametrize("text", [
    pytest.param("[1, 2]", id="a list"),
    pytest.param(lambda s: json.dumps({**s, "settings": [1]}), id="settings a list"),
    pytest.param(lambda s: json.dumps({**s, "settings": {**s["settings"], "trainable": [1]}}), id="trainable a list"),
    pytest.param(lambda s: json.dumps({**s, "settings": {**s["settings"], "inputs": [1]}}), id="inputs a list"),
    pytest.param(lambda s: json.dumps({**s, "settings": {**s["settings"], "inputs": {**s["settings"]["inputs"],
                                                                                     "images": [1]}}}),
                 id="images a list"),
    pytest.param(lambda s: json.dumps({**s, "settings": None}).replace("null", "[" * 100000 + "]" * 100000),
                 id="nested deeply"),
])
def test_a_state_json_of_the_wrong_shape_is_unreadable_not_a_traceback(tiny_sd, faces, run, text):
    _edit_state(run, text)
    line = _resume_refused(tiny_sd, faces, run, "checkpoint is unreadable")
    assert line.startswith(str(_step(run))) and line.endswith(DELETE_IT)


@pytest.mark.parametrize("step", [-5, 2.9, 2.0, "2", True, 4, None])
def test_a_step_that_is_not_the_folders_own_whole_number_is_unreadable(tiny_sd, faces, run, step):
    _edit_state(run, lambda s: json.dumps({**s, "step": step}))
    line = _resume_refused(tiny_sd, faces, run, "checkpoint is unreadable")
    assert line.endswith(DELETE_IT)


def _edit_tensors(run, name, edit):
    """The file's tensors edited, its metadata kept as it was."""
    path = _step(run) / name
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    save_file(edit(load_file(str(path))), str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("edit, said", [
    (lambda t: {"x.exp_avg": torch.zeros(3)}, r"unknown optimizer state 'x\.exp_avg'"),
    (lambda t: {"nodot": torch.zeros(3)}, "unknown optimizer state 'nodot'"),
    (lambda t: {**t, "0.bogus": torch.zeros(3)}, "unknown optimizer state '0.bogus'"),
    (lambda t: {**t, "9999.exp_avg": torch.zeros(3)}, "optimizer state for another network"),
    (lambda t: {k: (torch.zeros(3) if "exp_avg" in k else v) for k, v in t.items()},
     r"optimizer state for parameter 0: exp_avg has shape \(3,\), expected \(\d+(, \d+)*\)"),
    (lambda t: {k: v for k, v in t.items() if k != "1.exp_avg_sq"}, "optimizer state for parameter 1 lacks exp_avg_sq"),
    (lambda t: {k: v for k, v in t.items() if not k.startswith("1.")}, r"holds the state of \d+ parameters"),
    (lambda t: {k: v.fill_(float("nan")) if k == "0.exp_avg" else v for k, v in t.items()},
     r"'0\.exp_avg' holds NaN or infinite values"),
    pytest.param(lambda t: {k: v.fill_(float("inf")) if k == max(t) else v for k, v in t.items()},
                 r"holds NaN or infinite values", id="inf in the last tensor"),  # CW2 C05: every tensor is checked
    pytest.param(lambda t: {("0" + k if k.startswith("1.") else k): v for k, v in t.items()},
                 r"unknown optimizer state '01\.", id="index with a leading zero"),  # CW2 C15: not parameter 1
])
def test_an_optimizer_state_that_does_not_fit_the_parameters_is_refused_naming_file_and_parameter(
        tiny_sd, faces, run, edit, said):
    path = _edit_tensors(run, "optimizer.safetensors", edit)
    line = _resume_refused(tiny_sd, faces, run, said)
    assert line.startswith(f"{path}: ") and line.endswith("delete the checkpoint folder step-000002 to resume from "
                                                            "an older one"), line


def test_a_refused_optimizer_file_leaves_the_callers_weights_as_they_were(tiny_sd, faces, run):
    """A Python caller keeps its model after a refused resume (a --full run's checkpoint is the UNet itself):
    every file is checked before the first weight is loaded."""
    _edit_tensors(run, "optimizer.safetensors", lambda t: {"x.exp_avg": torch.zeros(3)})
    model = load_sd(str(tiny_sd))
    trainable = adapter_trainable(model, lowdim.get_space("lidb"), resolve_layers(None))
    before = {name: tensor.clone() for name, tensor in trainable.state().items()}
    with pytest.raises(lowdim.LowdimError, match="unknown optimizer state"):
        train(model, [Subject(faces, 0)], trainable, checkpointed_runs.CONFIG, out_dir=run, resume=True,
              progress=False)
    after = trainable.state()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)


@pytest.mark.parametrize("edit, said", [
    (lambda t: {k: v.fill_(float("inf")) if i == 0 else v for i, (k, v) in enumerate(t.items())},
     "holds NaN or infinite values"),
    pytest.param(lambda t: {k: v.fill_(float("inf")) if k == max(t) else v for k, v in t.items()},
                 "holds NaN or infinite values", id="inf in the last tensor"),  # CW2 C05
    (lambda t: {k: torch.zeros(7) if i == 0 else v for i, (k, v) in enumerate(t.items())}, r"expected shape"),
    (lambda t: {**t, "evil/A": torch.zeros(1)}, "unexpected layers"),
])
def test_a_trainable_state_that_does_not_fit_is_refused_naming_the_file(tiny_sd, faces, run, edit, said):
    path = _edit_tensors(run, "trainable.safetensors", edit)
    line = _resume_refused(tiny_sd, faces, run, said)
    assert line.startswith(f"{path}: ") and line.endswith("to resume from an older one"), line


def test_a_resumed_run_equals_an_unbroken_one(tiny_sd, faces, run, tmp_path):
    straight, _ = train_run(tiny_sd, faces, tmp_path / "straight")
    resumed, result = train_run(tiny_sd, faces, run, resume=True)
    assert result.start_step == 2
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_a_step_folder_that_is_a_link_is_not_resumed_from(tiny_sd, faces, run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(_step(run), elsewhere)
    shutil.rmtree(_step(run))
    _step(run).symlink_to(elsewhere)
    line = _resume_refused(tiny_sd, faces, run, "is a symbolic link")
    assert line.startswith(str(_step(run)))


def test_a_step_folder_that_is_a_link_is_not_written_through(tiny_sd, faces, run, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "checkpoints" / "step-000004").symlink_to(outside)
    with pytest.raises(lowdim.LowdimError, match="step-000004 is a symbolic link"):
        train_run(tiny_sd, faces, run, resume=True)
    assert list(outside.iterdir()) == []
    with pytest.raises(lowdim.LowdimError, match="step-000004 is a symbolic link"):
        checkpoints.step_folder(run, 4)
    assert list(outside.iterdir()) == []


def test_the_newest_checkpoint_is_the_highest_step_not_the_last_name(tmp_path):
    """Past a million steps the names grow a digit: step-1000000 comes before step-999999 in name order."""
    for step in (999999, 1000000):
        checkpoints.complete(checkpoints.step_folder(tmp_path, step), {"step": step}, keep=2)
    assert checkpoints.latest(tmp_path).name == "step-1000000"
    checkpoints.complete(checkpoints.step_folder(tmp_path, 1000001), {"step": 1000001}, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1000000", "step-1000001"]


def _hypernet_checkpoint(tmp_path, state) -> object:
    folder = tmp_path / "checkpoints" / "step-000003"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(state if isinstance(state, str) else json.dumps(state))
    return folder


@pytest.mark.parametrize("state", [
    pytest.param("[1, 2]", id="a list"),
    pytest.param({"step": 3, "settings": [1]}, id="settings a list"),
    pytest.param("[" * 100000 + "]" * 100000, id="nested deeply"),
])
def test_train_hypernet_finds_a_state_json_of_the_wrong_shape_unreadable(tmp_path, state):
    folder = _hypernet_checkpoint(tmp_path, state)
    with pytest.raises(lowdim.LowdimError, match=f"^{re.escape(str(folder))}: checkpoint is unreadable .*{DELETE_IT}$"):
        checkpoints.check_resume(folder, {"seed": 0})


@pytest.mark.parametrize("step", [-1, 2.5, "3", 7, None])
def test_train_hypernet_continues_only_from_the_folders_own_step(tmp_path, step):
    folder = _hypernet_checkpoint(tmp_path, {"step": step, "settings": {}})
    with pytest.raises(lowdim.LowdimError, match=f"^{re.escape(str(folder))}: checkpoint is unreadable"):
        checkpoints.step_to_continue(folder, 10)
    assert checkpoints.step_to_continue(_hypernet_checkpoint(tmp_path / "b", {"step": 3}), 10) == 3


@pytest.mark.parametrize("saved, said", [
    ({"x.exp_avg": torch.zeros(2)}, r"unknown optimizer state 'x\.exp_avg'"),
    ({"0.exp_avg": torch.zeros(3), "0.exp_avg_sq": torch.zeros(2), "0.step": torch.tensor(1.0)},
     r"optimizer state for parameter 0: exp_avg has shape \(3,\), expected \(2,\)"),
    ({"0.exp_avg": torch.zeros(2), "0.exp_avg_sq": torch.full((2,), float("nan")), "0.step": torch.tensor(1.0)},
     "'0.exp_avg_sq' holds NaN or infinite values"),
])
def test_train_hypernet_refuses_an_optimizer_state_that_does_not_fit(tmp_path, saved, said):
    path = tmp_path / "step-000001" / "optimizer.safetensors"
    path.parent.mkdir()
    save_file(saved, str(path))
    trainable = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(lowdim.LowdimError, match=f"^{re.escape(str(path))}: {said}"):
        checkpoints.load_optimizer(torch.optim.AdamW(trainable), trainable, path)


def test_train_hypernet_resumes_neither_a_foreign_optimizer_state_nor_through_a_link(weight_folders, tmp_path):
    from hypertrain_jobs import job  # tests/sd, on the path as pytest puts it

    from lowdim_sd.hypertrain import train_hypernet

    weights = weight_folders(tmp_path, "w", 4, seed=9)
    out = tmp_path / "h"
    train_hypernet(job(weights, out, steps=2, alpha=0.0), progress=False)
    step = out / "checkpoints" / "step-000002"
    kept = tmp_path / "kept"
    shutil.copytree(step, kept)
    save_file({"x.exp_avg": torch.zeros(3)}, str(step / "optimizer.safetensors"))
    with pytest.raises(lowdim.LowdimError, match=f"^{re.escape(str(step / 'optimizer.safetensors'))}: unknown "
                                                 r"optimizer state 'x\.exp_avg'"):
        train_hypernet(job(weights, out, steps=4, alpha=0.0, resume=True), progress=False)
    shutil.rmtree(step)
    step.symlink_to(kept)
    with pytest.raises(lowdim.LowdimError, match=f"^{re.escape(str(step))} is a symbolic link"):
        train_hypernet(job(weights, out, steps=4, alpha=0.0, resume=True), progress=False)
