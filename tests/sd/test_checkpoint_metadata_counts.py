"""A checkpoint's optimizer file and state.json read back for --resume, at the edges of their checks (review BS6-BS8):
the counts its metadata records, a negative AdamW step, and a step of ``true``. Each is refused in one line naming
the file, so a resume never continues from another network's optimizer or a corrupted bias correction."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file

import lowdim
from lowdim_sd import checkpoints
from lowdim_sd.checkpoint_reading import optimizer_metadata

DELETE_IT = "delete the checkpoint folder step-000001 to resume from an older one"


def trained(count: int = 2) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW, dict[str, torch.Tensor]]:
    """``count`` parameters after one AdamW step, and the state a checkpoint saves of them (keyed index.name)."""
    parameters = [torch.nn.Parameter(torch.zeros(2)) for _ in range(count)]
    optimizer = torch.optim.AdamW(parameters)
    for parameter in parameters:
        parameter.grad = torch.ones(2)
    optimizer.step()
    tensors = {f"{index}.{name}": torch.as_tensor(value).detach().clone()
               for index, parameter in enumerate(parameters) for name, value in optimizer.state[parameter].items()}
    return parameters, optimizer, tensors


def saved(tmp_path, tensors: dict[str, torch.Tensor], trainable, **metadata: str):
    """An optimizer file as a checkpoint of ``trainable`` writes it, with ``metadata`` over what it records."""
    path = tmp_path / "step-000001" / "optimizer.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_file(tensors, str(path), metadata={**optimizer_metadata(1, trainable, tensors), **metadata})
    return path


def refused(path, parameters, said: str) -> str:
    fresh = torch.optim.AdamW(parameters)
    with pytest.raises(lowdim.LowdimError) as error:
        checkpoints.load_optimizer(fresh, parameters, path)
    line = str(error.value)
    assert re.fullmatch(f"{re.escape(str(path))}: {said}; {DELETE_IT}", line), line
    assert not fresh.state, "nothing is loaded from a refused file"
    return line


def test_an_optimizer_file_as_a_checkpoint_writes_it_loads_exactly(tmp_path):
    parameters, _, tensors = trained()
    path = saved(tmp_path, tensors, parameters)
    fresh = torch.optim.AdamW(parameters)
    checkpoints.load_optimizer(fresh, parameters, path)
    loaded = {f"{index}.{name}": torch.as_tensor(value)
              for index, parameter in enumerate(parameters) for name, value in fresh.state[parameter].items()}
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[key], tensors[key]) for key in tensors)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", " 2", "2e0"])
def test_a_parameter_count_that_is_not_a_count_is_named_not_a_traceback(tmp_path, value):
    parameters, _, tensors = trained()
    path = saved(tmp_path, tensors, parameters, parameters=value)
    refused(path, parameters, rf"its metadata's parameters is {re.escape(repr(value))}, not a count")


def test_a_stateful_count_that_is_not_a_count_is_named_not_a_traceback(tmp_path):
    parameters, _, tensors = trained()
    path = saved(tmp_path, tensors, parameters, stateful="two")
    refused(path, parameters, r"its metadata's stateful is 'two', not a count")


def test_a_state_saved_from_a_larger_network_is_refused_though_its_indices_fit(tmp_path):
    """Saved from 3 parameters, of which only the first had a state: index 0 fits this run of 2, but the state is
    another network's (its parameter 0 need not be this run's)."""
    parameters, _, tensors = trained()
    only_first = {key: value for key, value in tensors.items() if key.startswith("0.")}
    path = saved(tmp_path, only_first, parameters, parameters="3")
    refused(path, parameters, r"optimizer state for another network \(3 parameters; this run trains 2\)")


def test_a_state_saved_from_a_smaller_network_is_refused(tmp_path):
    parameters, _, tensors = trained()
    path = saved(tmp_path, tensors, parameters, parameters="1")
    refused(path, parameters, r"optimizer state for another network \(1 parameters; this run trains 2\)")


@pytest.mark.parametrize("step", [-5.0, -0.5])
def test_a_negative_adamw_step_is_refused(tmp_path, step):
    """AdamW's bias correction is 1 - beta ** step: below 0 for a negative step, which would flip every update."""
    parameters, _, tensors = trained()
    tensors["0.step"] = torch.tensor(step)
    path = saved(tmp_path, tensors, parameters)
    refused(path, parameters, rf"optimizer state for parameter 0: step is {step}, below 0")


def test_a_step_of_true_is_not_step_one(tmp_path):
    """JSON's true is an int to isinstance, and equals 1: a step-000001 folder saying "step": true is damaged."""
    folder = tmp_path / "checkpoints" / "step-000001"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"step": True, "settings": {}}))
    with pytest.raises(lowdim.LowdimError, match=f"^{re.escape(str(folder))}: checkpoint is unreadable \\(state.json's "
                                                 f"step is True, not 1 as the folder's name says\\)"):
        checkpoints.step_to_continue(folder, 10)
    (folder / "state.json").write_text(json.dumps({"step": 1, "settings": {}}))
    assert checkpoints.step_to_continue(folder, 10) == 1
