"""What an adapter file that does not fit the model is told, in one line: a container holding the file's model under
two prefixes is sent to neither (it cannot know which), and a file for a model with many layers lists five of them
and counts the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import lowdim
from lowdim.errors import AdapterFileError


def toy(layers: int = 2) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Linear(8, 8) for _ in range(layers))).requires_grad_(False)


def saved(tmp_path: Path, model: nn.Module) -> Path:
    lowdim.inject(model, lowdim.get_space("lora", rank=1), [name for name, _ in model.named_children()], seed=0)
    return lowdim.save_adapter(tmp_path / "me.safetensors", model, base_model="toy")


def test_a_container_holding_the_model_twice_is_not_sent_into_either(tmp_path):
    path = saved(tmp_path, toy())
    holder = nn.ModuleDict({"unet": toy(), "ema_unet": toy()})
    with pytest.raises(AdapterFileError) as refused:
        lowdim.load_adapter(path, holder)
    message = str(refused.value)
    assert message.startswith(f"{path} was made for toy and does not fit this model: 0 (missing in model)")
    assert "get_submodule" not in message and "\n" not in message
    assert lowdim.Adapters(holder).names() == []


def test_a_file_for_a_model_with_many_layers_lists_five_and_counts_the_rest(tmp_path):
    path = saved(tmp_path, toy(8))
    with pytest.raises(AdapterFileError) as refused:
        lowdim.load_adapter(path, nn.Sequential(nn.Linear(4, 4)))
    message = str(refused.value)
    listed = message.partition("does not fit this model: ")[2].split("; ")
    assert listed == ["0 (file 8x8, model 4x4)", *(f"{index} (missing in model)" for index in range(1, 5)),
                      "and 3 more"]


@pytest.mark.parametrize("space", ["lidb", "lora"])
def test_a_layer_of_the_transposed_shape_is_refused_by_the_shape_line_not_a_later_check(tmp_path, space):
    # A 24x16 file into a 16x24 layer has the same element count: only the shape comparison can tell them apart,
    # and the user must hear that the model differs, not (lidb) that the platform made other bases.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 24))
    lowdim.inject(model, lowdim.get_space(space), ["0"], seed=11)
    path = lowdim.save_adapter(tmp_path / "me.safetensors", model, base_model="toy")
    transposed = nn.Sequential(nn.Linear(24, 16))
    for reader in (lowdim.load_adapter, lowdim.read_adapter):
        with pytest.raises(AdapterFileError) as refused:
            reader(path, transposed)
        assert str(refused.value) == f"{path} was made for toy and does not fit this model: 0 (file 24x16, model 16x24)"
    assert lowdim.Adapters(transposed).names() == []
