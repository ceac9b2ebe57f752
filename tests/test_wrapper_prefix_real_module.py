"""A model with a real submodule named ``module`` (review BT8): a file that fits it as saved (``module.0``) loads onto
that submodule, as named. Only a file that fits *nowhere* as saved is read as an older lowdim's file saved through a
DataParallel/DDP and has its ``module.`` dropped; here dropping it would also fit (the model has a same-shaped ``0``)
and would put the adapter on the wrong layer without a word."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lowdim


class WithAModuleChild(nn.Sequential):
    """Layers ``0`` and ``module.0``, of the same shape: a file for either fits the other once renamed."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(nn.Linear(8, 8))
        self.module = nn.Sequential(nn.Linear(8, 8))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(self[0](x))


def saved_on_the_module_child(tmp_path):
    """(path, the trained model): an adapter on ``module.0`` only, its params away from the identity."""
    trained = WithAModuleChild()
    adapters = lowdim.Adapters(trained)
    adapters.add("default", lowdim.get_space("lora", rank=2), ["module.0"], seed=3)
    with torch.no_grad():
        for slot in adapters.slots("default").values():
            for param in slot.parameters():
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(param.numel()))
    return lowdim.save_adapter(tmp_path / "a.safetensors", adapters), trained


@pytest.mark.parametrize("given", ["path", "read_adapter"])
def test_a_file_for_a_real_module_submodule_loads_onto_it_as_named(tmp_path, given):
    path, trained = saved_on_the_module_child(tmp_path)
    fresh = WithAModuleChild()
    info = lowdim.load_adapter(path if given == "path" else lowdim.read_adapter(path), fresh)
    assert [layer.name for layer in info.layers] == ["module.0"]
    assert list(lowdim.Adapters(fresh).slots()) == ["module.0"]
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), trained(x))


def test_reading_the_file_against_the_model_keeps_its_names(tmp_path):
    path, _ = saved_on_the_module_child(tmp_path)
    read = lowdim.read_adapter(path, WithAModuleChild())
    assert [layer.name for layer in read.layers] == ["module.0"]
