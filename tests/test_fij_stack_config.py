"""A stack component whose ``seed`` or ``config`` has the wrong type is refused in one line naming the component and
the field: when the stack is made, when a file recording it is loaded, and in ``lowdim show``'s "problem" row. A raw
ValueError/TypeError from deep inside the injection, or a seed of 1.5 taken as 1, is what these guard against."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError, ConfigError
from lowdim_sd.file_info import describe

REFUSED = "every command that loads this file refuses it"

BAD = [
    ("seed", "x", "seed must be an integer or null, got 'x'"),
    ("seed", 1.5, "seed must be an integer or null, got 1.5"),
    ("seed", True, "seed must be an integer or null, got True"),
    ("config", [1], "config must be a dict of options, got [1]"),
    ("config", "rank=4", "config must be a dict of options, got 'rank=4'"),
]
BAD_IDS = ["seed-str", "seed-float", "seed-bool", "config-list", "config-str"]


def components(field: str, value: object) -> list[dict]:
    """A lidb-then-lora stack whose second component (index 1) carries ``value`` as its ``field``."""
    return [{"space": "lidb", "config": {}}, {"space": "lora", "config": {"rank": 2}, field: value}]


@pytest.mark.parametrize(("field", "value", "words"), BAD, ids=BAD_IDS)
def test_a_component_field_of_the_wrong_type_is_one_config_error_naming_the_component(field, value, words):
    with pytest.raises(ConfigError) as refused:
        lowdim.get_space("stack", components=components(field, value))
    assert str(refused.value) == f"stack: component 1 ('lora'): {words}"


@pytest.mark.parametrize(("field", "value"), [("seed", None), ("seed", 7), ("seed", np.int64(7)), ("config", None)],
                         ids=["seed-null", "seed-int", "seed-numpy-int", "config-null"])
def test_a_component_field_of_a_right_type_is_taken(field, value):
    stack = lowdim.get_space("stack", components=components(field, value))
    model = nn.Sequential(nn.Linear(4, 4))
    lowdim.inject(model, stack, ["0"], seed=0)
    assert torch.isfinite(model(torch.randn(2, 4))).all()


def saved_stack(tmp_path: Path, field: str, value: object) -> Path:
    """A valid stack file whose recorded component 1 is then edited to carry ``value`` as its ``field``."""
    model = nn.Sequential(nn.Linear(4, 4))
    lowdim.inject(model, lowdim.get_space("stack", components=components("seed", None)), ["0"], seed=0)
    path = lowdim.save_adapter(tmp_path / "stack.safetensors", model)
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (a handle, no dict)
    config = json.loads(meta["space_config"])
    config["components"][1][field] = value
    save_file(tensors, str(path), metadata={**meta, "space_config": json.dumps(config)})
    return path


@pytest.mark.parametrize(("field", "value", "words"), BAD, ids=BAD_IDS)
def test_a_file_recording_a_bad_component_is_refused_in_one_line_by_load_and_show(tmp_path, field, value, words):
    path = saved_stack(tmp_path, field, value)
    with pytest.raises(AdapterFileError) as refused:
        lowdim.load_adapter(path, nn.Sequential(nn.Linear(4, 4)))
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert f"stack: component 1 ('lora'): {words}" in message
    problem = dict(describe(path).rows)["problem"]
    assert f"stack: component 1 ('lora'): {words}" in problem and problem.endswith(REFUSED)
