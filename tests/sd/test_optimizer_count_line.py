"""The "another network" refusal of an optimizer file says a true thing (review BS20): where the file records this
run's own parameter count but holds a state past it, the line names that state, not "2 parameters; this run trains
2", which contradicts itself."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from lowdim.errors import LowdimError
from lowdim_sd.checkpoint_reading import optimizer_state


def adamw_file(tmp_path, indices: list[int], **metadata: str):
    """Two parameters of 3 values, and an AdamW state file holding entries for ``indices``."""
    parameters = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]
    tensors = {}
    for index in indices:
        tensors.update({f"{index}.step": torch.tensor(1.0), f"{index}.exp_avg": torch.zeros(3),
                        f"{index}.exp_avg_sq": torch.zeros(3)})
    path = tmp_path / "optimizer.safetensors"
    save_file(tensors, str(path), metadata={"stateful": str(len(indices)), "step": "1", **metadata})
    return torch.optim.AdamW(parameters), parameters, path


def refusal(optimizer, parameters, path) -> str:
    with pytest.raises(LowdimError) as refused:
        optimizer_state(optimizer, parameters, path)
    return str(refused.value)


def test_a_state_past_the_count_the_file_itself_records_is_named_by_its_index(tmp_path):
    said = refusal(*adamw_file(tmp_path, [0, 2], parameters="2"))
    assert ("optimizer state for another network, or an edited one: it holds a state for parameter 2, past the 2 "
            "parameters this run trains and its metadata records; delete the checkpoint folder") in said, said
    assert "(2 parameters; this run trains 2)" not in said


@pytest.mark.parametrize(("recorded", "shown"), [({"parameters": "3"}, "(3 parameters; this run trains 2)"),
                                                 ({}, "(at least 3 parameters; this run trains 2)")],
                         ids=["recorded-count", "no-count-recorded"])
def test_another_count_is_still_named_as_another_network(tmp_path, recorded, shown):
    said = refusal(*adamw_file(tmp_path, [0, 2], **recorded))
    assert f"optimizer state for another network {shown}" in said, said
